"""A damaged model directory is refused at load, naming the path and the problem."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from classify_helpers import trained_model
from click.testing import CliRunner

from spectraldl.cli import main
from spectraldl.io.bundled import bundled_files
from spectraldl.ml.modelcard import ModelCard, ModelDirError, load_model
from spectraldl.ml.novelty import NoveltyModel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("modelcard"))


def _damaged(model_dir: Path, folder: Path, change: Callable[[Path], None]) -> Path:
    copy = folder / "damaged"
    shutil.copytree(model_dir, copy)
    change(copy)
    return copy


def _edit_card(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        card = json.loads((path / "card.json").read_text())
        edit(card)
        (path / "card.json").write_text(json.dumps(card))

    return change


def _truncate_novelty(path: Path) -> None:
    data = (path / "novelty.npz").read_bytes()
    (path / "novelty.npz").write_bytes(data[: len(data) // 2])


def _foreign_novelty(path: Path) -> None:
    # Another model's novelty file: same feature width and classes, other numbers.
    mine = NoveltyModel.load(path / "novelty.npz")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, mine.dim))
    NoveltyModel.fit(features, np.repeat(mine.labels, 60 // len(mine.labels))).save(
        path / "novelty.npz"
    )


def _drop_class(card: dict) -> None:
    card["classes"] = card["classes"][:-1]


def _other_grid(card: dict) -> None:
    card["preprocessing"]["grid_n"] = 100
    card["grid"]["n"] = 100


def _grid_block(card: dict) -> None:
    card["grid"]["start_aa"] = 6500.0


def _unknown_key(card: dict) -> None:
    card["preprocessing"]["sky_subtract"] = True


def _text_temperature(card: dict) -> None:
    card["temperature"] = "1.3"


def _repeated_class(card: dict) -> None:
    card["classes"][-1] = card["classes"][0]


def _other_classes(card: dict) -> None:
    card["classes"] = ["star", "galaxy", "qso", "agn"][: len(card["classes"])]


def _one_foreign_class(card: dict) -> None:
    card["classes"][-1] = "double_peak"


DAMAGE = {
    "truncated novelty": (_truncate_novelty, "novelty.npz: "),
    "foreign novelty": (_foreign_novelty, "novelty.npz: not the novelty model this card"),
    "class dropped": (_edit_card(_drop_class), "the network has 3 outputs, the card names 2"),
    "other grid": (_edit_card(_other_grid), "does not take the card's grid of 100 points"),
    "grid block": (_edit_card(_grid_block), "'grid'"),
    "unknown key": (_edit_card(_unknown_key), "unknown preprocessing keys 'sky_subtract'"),
    "text temperature": (_edit_card(_text_temperature), "'temperature' must be a number"),
    "repeated class": (_edit_card(_repeated_class), "appear more than once"),
    "other classes": (
        _edit_card(_other_classes),
        "card.json: class names 'star', 'galaxy', 'qso' are not spectraldl's; its classes are "
        "emission, absorption, unknown, double-peak, noise",
    ),
    "foreign class": (_edit_card(_one_foreign_class), "class name 'double_peak' is not"),
}


def test_the_intact_model_loads(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    assert model.novelty is not None
    card = json.loads((model_dir / "card.json").read_text())
    assert card["novelty"]["sha256"] == model.novelty.digest


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_model_directory_is_refused_at_load(
    model_dir: Path, tmp_path: Path, damage: str
) -> None:
    change, message = DAMAGE[damage]
    broken = _damaged(model_dir, tmp_path, change)
    with pytest.raises(ModelDirError) as info:
        load_model(broken, device="cpu")
    assert str(broken) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "damage", ["truncated novelty", "foreign novelty", "unknown key", "other classes"]
)
def test_classify_says_it_in_one_line_before_reading_any_input(
    model_dir: Path, tmp_path: Path, damage: str
) -> None:
    change, message = DAMAGE[damage]
    broken = _damaged(model_dir, tmp_path, change)
    out = tmp_path / "pred.parquet"
    # A source that does not exist: the model is refused first, the source never looked at.
    files = [str(bundled_files(archive="lamost")[0].path), str(tmp_path / "no-such-source")]
    result = CliRunner().invoke(main, ["classify", str(broken), *files, "-o", str(out)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "no-such-source" not in result.output and "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob("pred.parquet*"))


def test_a_shipped_card_round_trips_through_model_card() -> None:
    path = Path(__file__).parents[1] / "src/spectraldl/data/models/cnn/card.json"
    text = path.read_text(encoding="utf-8")
    card = ModelCard.from_json(json.loads(text))
    assert card.architecture is not None and card.architecture.name == "cnn"
    assert card.classes == ["emission", "absorption", "double-peak", "noise"]
    assert card.to_json() == json.loads(text)
    assert json.dumps(card.to_json(), indent=2) + "\n" == text
    extra = ModelCard.from_json({**json.loads(text), "learning": {"rows": {}}})
    assert extra.extra == {"learning": {"rows": {}}}
    assert list(extra.to_json())[-2:] == ["learning", "metrics"]
