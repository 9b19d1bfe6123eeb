"""The ``spectraldl`` command: one sub-command per stage.

Each module in this package holds the thin click commands of one stage: they
parse arguments and call library functions, importing heavy libraries
(PyTorch, matplotlib, astropy) only when run, so ``spectraldl --help`` is
quick. Commands are discovered from the modules; adding a stage is adding a
module.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


class _DiscoveringGroup(click.Group):
    """A group that collects the click commands defined in this package's modules."""

    _discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            for value in vars(module).values():
                callback = getattr(value, "callback", None)
                if (
                    isinstance(value, click.Command)
                    and callback is not None
                    and callback.__module__ == module.__name__
                ):
                    self.add_command(value)
        self._discovered = True

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._discover()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._discover()
        return super().get_command(ctx, cmd_name)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the version, read from the package metadata only when asked for."""
    if not value or ctx.resilient_parsing:
        return
    from spectraldl import __version__

    click.echo(f"spectraldl, version {__version__}")
    ctx.exit()


@click.group(cls=_DiscoveringGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Find emission-line stars in spectral archives with deep learning.

    A typical run: ingest labelled Ondřejov spectra into a dataset, train a
    network, classify a LAMOST release, vet the candidates. `spectraldl demo`
    does it all on bundled data.
    """
