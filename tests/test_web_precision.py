"""Precision measured from the verdicts (`GET /api/catalogues/{id}/precision`, the vetting
index's table and calibration plot) against a case computed by hand, on SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sqlalchemy import delete, func, select
from web_support import ThreadServer, database_url, login

from spectraldl.web import precision, store
from spectraldl.web.app import create_app
from spectraldl.web.auth import add_user
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import import_frame
from spectraldl.web.models import Prediction, User, VetDecision

ROWS = [  # id, predicted class, probability of that class
    ("e1", "emission", 0.95),
    ("e2", "emission", 0.95),
    ("e3", "emission", 0.92),
    ("e4", "emission", 0.55),
    ("e5", "emission", 0.51),
    ("e6", "emission", 0.45),
    ("d1", "double-peak", 0.75),
    ("d2", "double-peak", 0.71),
    ("a1", "absorption", 0.99),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def vetted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, int]]:
    """A catalogue of `ROWS` with these verdicts (each vetter's latest counts):

    e1 confirm+confirm; e2 confirm, reject, reject; e3 alice reject then undone, bob
    confirm; e4 confirm vs reject (a tie); e5 noise; e6 none; d1 confirm; d2 bob reject
    then confirm; a1 (not a candidate) confirm.
    """
    with database_url(request.param, tmp_path) as url:
        db = open_database(url)
        with db.session() as session:
            for name in ("alice", "bob", "carol"):
                add_user(session, name, f"{name}-password")
            session.commit()
        frame = pd.DataFrame(
            {
                "id": [r[0] for r in ROWS],
                "predicted_class": [r[1] for r in ROWS],
                "p_emission": [r[2] if r[1] == "emission" else 0.1 for r in ROWS],
                "p_double_peak": [r[2] if r[1] == "double-peak" else 0.1 for r in ROWS],
                "p_absorption": [r[2] if r[1] == "absorption" else 0.1 for r in ROWS],
            }
        )
        catalogue = import_frame(db, frame, name="hand.csv").catalogues[0][0]
        with db.session() as session:
            users = {u.name: u for u in session.scalars(select(User))}
            pid = dict(session.execute(select(Prediction.ident, Prediction.id)).all())

            def vet(user: str, ident: str, verdict: str) -> int:
                made = store.record_verdict(
                    session, user=users[user], prediction_id=pid[ident], verdict=verdict
                )
                session.commit()
                return made.id

            vet("alice", "e1", "confirm")
            vet("bob", "e1", "confirm")
            vet("alice", "e2", "confirm")
            vet("bob", "e2", "reject")
            vet("carol", "e2", "reject")
            undone = vet("alice", "e3", "reject")
            store.undo_verdict(session, user=users["alice"], decision_id=undone)
            session.commit()
            vet("bob", "e3", "confirm")
            vet("alice", "e4", "confirm")
            vet("bob", "e4", "reject")
            vet("alice", "e5", "noise")
            vet("alice", "d1", "confirm")
            vet("bob", "d2", "reject")
            vet("bob", "d2", "confirm")
            vet("alice", "a1", "confirm")
        try:
            yield db, catalogue
        finally:
            db.dispose()


def test_wilson_interval_matches_scipy_and_a_hand_value() -> None:
    # 2 of 4: centre 0.5, half-width 1.96/(1+z^2/4) * sqrt(1/16 + z^2/64) = 0.34997
    assert precision.wilson_interval(2, 4) == pytest.approx((0.15003, 0.84997), abs=1e-5)
    for k, n in [(0, 1), (1, 1), (3, 7), (40, 41), (500, 1000), (0, 30)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert precision.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert precision.wilson_interval(0, 0) == (0.0, 1.0)


def test_precision_of_the_hand_computed_case(vetted: tuple[Database, int]) -> None:
    db, catalogue = vetted
    with db.session() as session:
        result = precision.catalogue_precision(session, catalogue)
    assert result["catalogue"] == catalogue
    emission = result["classes"]["emission"]
    # vetted: e1 (confirm), e2 (reject), e3 (confirm: alice's undone reject is gone),
    # e5 (noise); e4 is a tie, e6 unvetted
    assert {k: emission[k] for k in ("total", "vetted", "confirmed", "ties", "noise")} == {
        "total": 6,
        "vetted": 4,
        "confirmed": 2,
        "ties": 1,
        "noise": 1,
    }
    assert emission["precision"] == 0.5
    assert emission["interval"] == pytest.approx([0.15003, 0.84997], abs=1e-5)
    assert emission["expected_true"] == 3.0
    assert emission["expected_true_by_bins"] is None  # e6's bin has nobody's verdict
    double = result["classes"]["double-peak"]
    assert (double["total"], double["vetted"], double["confirmed"]) == (2, 2, 2)
    assert double["precision"] == 1.0
    # 2 of 2: centre (1 + z^2/4)/(1 + z^2/2) = 0.67119, half 0.32881
    assert double["interval"] == pytest.approx([0.34238, 1.0], abs=1e-5)
    assert double["expected_true"] == 2.0 and double["expected_true_by_bins"] == 2.0
    bins = {(b["class"], round(b["p_min"], 1)): b for b in result["bins"]}
    assert sorted(bins) == [
        ("double-peak", 0.7),
        ("emission", 0.4),
        ("emission", 0.5),
        ("emission", 0.9),
    ]
    top = bins[("emission", 0.9)]
    assert (top["total"], top["vetted"], top["confirmed"]) == (3, 3, 2)
    assert top["precision"] == pytest.approx(2 / 3) and top["p_max"] == pytest.approx(1.0)
    middle = bins[("emission", 0.5)]
    assert (middle["vetted"], middle["confirmed"], middle["ties"]) == (1, 0, 1)
    assert middle["precision"] == 0.0
    assert bins[("emission", 0.4)]["precision"] is None
    assert bins[("emission", 0.4)]["interval"] == [0.0, 1.0]


def test_precision_api_and_the_vetting_index(vetted: tuple[Database, int]) -> None:
    db, catalogue = vetted
    with ThreadServer(create_app(db)) as server, httpx.Client(base_url=server.url) as client:
        assert client.get(f"/api/catalogues/{catalogue}/precision").status_code == 401
        login(client, "carol", "carol-password")
        answer = client.get(f"/api/catalogues/{catalogue}/precision")
        assert answer.status_code == 200
        body = answer.json()
        assert body["classes"]["emission"]["confirmed"] == 2
        assert set(body["classes"]) == {"emission", "double-peak"}
        assert client.get("/api/catalogues/999999/precision").status_code == 404
        assert client.get(f"/api/catalogues/{2**31}/precision").status_code == 422
        page = client.get("/vet").text
        table = page[page.index(f'id="precision-{catalogue}"') :]
        row = re.search(r'<tr data-class="emission">(.*?)</tr>', table, re.S).group(1)
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        assert cells[:4] == ["emission", "6", "4", "2"]
        assert cells[4] == "0.500 (0.150-0.850)"
        assert cells[5] == "3"
        # one point per vetted bin: emission 0.9-1.0 and 0.5-0.6, double-peak 0.7-0.8
        assert len(re.findall(r'<g class="bin"', table.split("</svg>")[0])) == 3
        assert "emission p 0.9-1.0: 2 of 3 confirmed" in table


def test_sample_order_is_seeded_and_stratified_in_every_prefix() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    classes = rng.choice(["emission", "double-peak"], size=n, p=[0.8, 0.2])
    probability = rng.beta(5, 1.5, size=n)  # most candidates are probable: a skewed catalogue
    rows = [
        (i + 1, str(c), float(p)) for i, (c, p) in enumerate(zip(classes, probability, strict=True))
    ]
    order = store.sample_order(rows, seed=7)
    assert sorted(order) == list(range(1, n + 1))
    assert store.sample_order(list(reversed(rows)), seed=7) == order
    assert store.sample_order(rows, seed=8) != order
    stratum = {pid: (c, min(9, int(p * 10))) for pid, c, p in rows}
    sizes = Counter(stratum.values())
    for k in (20, 100, 333, 1000):
        got = Counter(stratum[pid] for pid in order[:k])
        for key, size in sizes.items():
            assert abs(got.get(key, 0) - k * size / n) <= 1.0 + 1e-9, (k, key)
    # not the probability order: the first hundred reach into the low bins too
    assert min(probability[pid - 1] for pid in order[:100]) < 0.5


def test_sample_queue_through_the_api(vetted: tuple[Database, int]) -> None:
    db, catalogue = vetted
    with ThreadServer(create_app(db)) as server, httpx.Client(base_url=server.url) as client:
        client.headers["X-CSRF-Token"] = login(client, "carol", "carol-password")
        url = f"/api/catalogues/{catalogue}/queue"
        first = client.get(url, params={"order": "sample", "seed": 3, "limit": 50}).json()
        again = client.get(url, params={"order": "sample", "seed": 3, "limit": 50}).json()
        # carol has vetted e2: the other seven candidates remain for her
        assert first == again and first["remaining"] == 7 and len(first["ids"]) == 7
        with db.session() as session:
            e2 = session.scalar(select(Prediction.id).where(Prediction.ident == "e2"))
            rows = session.execute(
                select(Prediction.id, Prediction.predicted_class, Prediction.probability).where(
                    Prediction.predicted_class != "absorption"
                )
            ).all()
        assert first["ids"] == [i for i in store.sample_order(rows, seed=3) if i != e2]
        client.post("/api/vet", json={"prediction_id": first["ids"][0], "verdict": "confirm"})
        after = client.get(url, params={"order": "sample", "seed": 3, "limit": 50}).json()
        assert after["ids"] == first["ids"][1:] and after["remaining"] == 6
        bad = client.get(url, params={"order": "sample", "seed": -1})
        assert bad.status_code == 422
        assert "order=sample" in client.get(f"/vet/{catalogue}").text


def reference_counts(session, catalogue: int) -> dict[tuple[str, int], Counter]:
    """Per (class, bin) counts from `precision.resolved_verdicts`, one candidate at a time."""
    resolved = precision.resolved_verdicts(session, catalogue)
    out: dict[tuple[str, int], Counter] = {}
    rows = session.execute(
        select(Prediction.id, Prediction.predicted_class, Prediction.probability).where(
            Prediction.catalogue_id == catalogue
        )
    )
    for pid, name, probability in rows:
        if name not in store.CANDIDATE_CLASSES:
            continue
        cell = out.setdefault((name, min(9, int(probability * 10))), Counter())
        cell["total"] += 1
        if pid in resolved:
            verdict = resolved[pid]
            cell["ties" if verdict is None else "vetted"] += 1
            cell["confirmed"] += verdict == "confirm"
            cell["noise"] += verdict == "noise"
    return out


def test_the_tally_followed_verdict_by_verdict_agrees_with_counting_one_by_one(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(4)
    n = 400
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "predicted_class": rng.choice(["emission", "double-peak", "absorption"], n),
            "p_emission": rng.uniform(0, 1, n).round(3),
            "p_double_peak": rng.uniform(0, 1, n).round(3),
            "p_absorption": rng.uniform(0, 1, n).round(3),
        }
    )
    db = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    with db.session() as session:
        users = [add_user(session, f"user{i}", "a-long-password") for i in range(3)]
        session.commit()
        catalogue = import_frame(db, frame, name="random").catalogues[0][0]
        ids = list(session.scalars(select(Prediction.id)))
        for round_ in range(3):
            for user in users:
                chosen = rng.choice(ids, 150, replace=False).tolist()
                verdict = ["confirm", "reject", "noise"][(round_ + user.id) % 3]
                made = store.record_verdicts(
                    session, user=user, prediction_ids=chosen, verdict=verdict
                )
                session.commit()
                store.undo_verdicts(session, user=user, decision_ids=[d.id for d in made[:20]])
                session.commit()
            result = precision.catalogue_precision(session, catalogue)
            fresh = precision.new_tally(session, catalogue, store.PRECISION_BINS)
            assert result == precision.precision_table(fresh, catalogue, store.PRECISION_BINS)
            expected = reference_counts(session, catalogue)
            got = {(b["class"], round(b["p_min"] * 10)): b for b in result["bins"]}
            assert set(got) == set(expected)
            for key, counts in expected.items():
                for field in ("total", "vetted", "confirmed", "ties", "noise"):
                    assert got[key][field] == counts[field], (key, field)
    db.dispose()


def test_verdicts_that_cannot_be_followed_rebuild_the_tally(vetted: tuple[Database, int]) -> None:
    db, catalogue = vetted
    with db.session() as session:
        before = precision.catalogue_precision(session, catalogue)
        tally = precision.new_tally(session, catalogue, store.PRECISION_BINS)
        assert precision.catch_up(session, tally, catalogue)
        on_candidates = (
            select(func.max(VetDecision.id))
            .join(Prediction)
            .where(Prediction.predicted_class.in_(store.CANDIDATE_CLASSES))
        )
        gone = session.scalar(on_candidates)
        session.execute(delete(VetDecision).where(VetDecision.undo_of == gone))
        session.execute(delete(VetDecision).where(VetDecision.id == gone))
        session.commit()
        assert not precision.catch_up(session, tally, catalogue)
        after = precision.catalogue_precision(session, catalogue)
        fresh = precision.new_tally(session, catalogue, store.PRECISION_BINS)
        assert after == precision.precision_table(fresh, catalogue, store.PRECISION_BINS)
        assert after != before
