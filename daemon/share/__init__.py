"""The files an operator installs beside the program, shipped in the package for `stocksync init`.

In a checkout they live at the top of the tree (config/, deploy/, docs/); the entries here are
links to them, which the build turns into copies, so an installed wheel carries them too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Shipped file -> where `init` writes it, relative to its folder: the layout of a checkout, so
# that the operations guide's `/path/to/stocksync/deploy/...` paths work for either.
FILES: dict[str, str] = {
    "stocksync.example.toml": "config/stocksync.example.toml",
    "variant-map.example.csv": "config/variant-map.example.csv",
    "stocksync.service": "deploy/systemd/stocksync.service",
    "stocksync@.service": "deploy/systemd/stocksync@.service",
    "stocksync-alerts.yml": "deploy/prometheus/stocksync-alerts.yml",
    "prometheus.example.yml": "deploy/prometheus/prometheus.example.yml",
    "stocksync-dashboard.json": "deploy/grafana/stocksync-dashboard.json",
    "operations.md": "docs/operations.md",
    "LICENSE": "LICENSE",
}


class FilesExist(Exception):
    """`init` would overwrite these files."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = paths


def write_files(folder: Path, *, force: bool = False) -> list[Path]:
    """Write every shipped file under `folder`; FilesExist (and nothing written) if one is
    there already, unless `force`. Returns the paths written."""
    targets = {name: folder / relative for name, relative in FILES.items()}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not force:
        raise FilesExist(existing)
    shipped = resources.files(__name__)
    for name, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(shipped.joinpath(name).read_bytes())
    return list(targets.values())
