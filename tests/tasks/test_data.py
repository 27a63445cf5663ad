"""Real data loads with the published counts; missing, corrupt and downloaded data behave."""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

import tasks
from tasks.data import DataError, download, sha256
from tasks.music import load_rolls


@pytest.mark.parametrize(("task", "key"), [("ptb", "ptb"), ("wikitext2", "wikitext-2")])
def test_token_counts_equal_the_manifest(task: str, key: str, manifest: dict) -> None:
    t = tasks.get(task)
    dm = t.datamodule()
    dm.setup()
    counts = {k: v.numel() for k, v in dm.tokens.items()}
    assert counts == manifest[key]["counts"]["tokens_with_eos"]
    assert t.spec.input_size == manifest[key]["counts"]["vocab_with_eos"]


@pytest.mark.parametrize(("task", "key"), [("jsb", "jsb_chorales"), ("nottingham", "nottingham"),
                                           ("piano_midi", "piano_midi"), ("musedata", "musedata")])
def test_music_counts_equal_the_manifest(task: str, key: str, manifest: dict) -> None:
    rolls = load_rolls(task)
    for split, roll_list in rolls.items():
        want = manifest[key]["counts"][split]
        assert len(roll_list) == want["sequences"]
        assert sum(r.shape[0] for r in roll_list) == want["time_steps"]
        frames = torch.cat(roll_list)
        assert frames.shape[1] == 88 and ((frames == 0) | (frames == 1)).all()


def test_music_batches_are_padded_and_masked(data_dir: Path) -> None:
    dm = tasks.get("jsb", batch_size=4).datamodule()
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape[0] == 4 and batch["x"].shape[2] == 88
    assert batch["mask"].sum(1).tolist() == batch["lengths"].tolist()
    assert (batch["x"][~batch["mask"]] == 0).all()


def test_stream_windows_continue_each_other(data_dir: Path) -> None:
    dm = tasks.get("ptb", batch_size=4, bptt=5).datamodule()
    it = iter(dm.train_dataloader())
    a, b = next(it), next(it)
    assert a["x"].shape == (4, 5)
    assert (a["y"][:, :-1] == a["x"][:, 1:]).all() and (b["x"][:, 0] == a["y"][:, -1]).all()


def test_missing_data_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"looked for {tmp_path}/ptb/ptb.train.txt.*growrnn data download ptb"):
        tasks.get("ptb")


def test_corrupt_data_is_refused(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(data_dir / "jsb_chorales", tmp_path / "jsb_chorales")
    target = tmp_path / "jsb_chorales" / "JSB_Chorales.mat"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:1000])
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path))
    with pytest.raises(DataError, match="corrupt or truncated.*1000 bytes.*delete it"):
        tasks.get("jsb")


@pytest.fixture
def serve():
    """Start an HTTP server on 127.0.0.1 for a folder; return its base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["jsb", "ptb"])
def test_download_from_a_mirror_verifies(name: str, serve, tmp_path: Path, data_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    umask = os.umask(0o022)
    try:
        paths = download(name, mirror=serve(data_dir))
    finally:
        os.umask(umask)
    assert paths and all(sha256(p) == sha256(data_dir / p.relative_to(tmp_path / "data")) for p in paths)
    assert tasks.get(name).spec.name == name  # loads from the downloaded copy
    # readable by whoever shares the data folder, as any file written under that umask
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)


def test_download_refuses_a_bad_copy(serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    bad = tmp_path / "bad"
    (bad / "jsb_chorales").mkdir(parents=True)
    (bad / "jsb_chorales" / "JSB_Chorales.mat").write_bytes(b"not the file")
    url = serve(bad)
    with pytest.raises(DataError, match="could not fetch .*404.*HINT: check the mirror's address, and that it "
                                        "holds ptb/ptb.train.txt"):
        download("ptb", mirror=url)
    with pytest.raises(DataError, match="does not match its sha256.*nothing was written"):
        download("jsb", mirror=url)
    assert not list((tmp_path / "data").rglob("*.mat"))


def test_download_command(serve, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from growrnn.cli import main
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path))
    assert main(["data", "download", "jsb", "--mirror", serve(data_dir)]) == 0
    assert "JSB_Chorales.mat" in capsys.readouterr().out
    assert main(["data", "download", "jsb", "--mirror", "http://127.0.0.1:9/unreachable"]) == 0  # already here
    assert main(["data", "download", "nottingham", "--mirror", "http://127.0.0.1:9/unreachable"]) == 2
    assert "could not fetch" in capsys.readouterr().err


def test_a_failed_download_writes_nothing(serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second file of a set is corrupt: the first, good one is not kept either, nor any folder."""
    from tasks.data import SOURCES, File, Source
    mirror = tmp_path / "mirror" / "two"
    mirror.mkdir(parents=True)
    (mirror / "a.txt").write_text("good")
    (mirror / "b.txt").write_text("corrupt")
    files = (File("two/a.txt", sha256(mirror / "a.txt"), "unused"), File("two/b.txt", "0" * 64, "unused"))
    monkeypatch.setitem(SOURCES, "two", Source("two", files, "test"))
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data" / "root"))
    with pytest.raises(DataError, match="b.txt does not match its sha256.*nothing was written"):
        download("two", mirror=serve(tmp_path / "mirror"))
    assert not (tmp_path / "data").exists(), list((tmp_path / "data").rglob("*"))


def _imdb_archive(imdb_dir: Path, out: Path, extra: str | None = None) -> Path:
    import tarfile
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(imdb_dir, arcname="aclImdb")
        if extra is not None:
            evil = out / "evil.txt"
            evil.write_text("outside")
            tar.add(evil, arcname=extra)
    return archive


def test_imdb_has_its_public_home_and_sha256() -> None:
    from tasks.data import SOURCES
    (f,) = SOURCES["imdb"].files
    assert f.url == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    assert f.sha256 == "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"


def _mirror_imdb(archive: Path, monkeypatch: pytest.MonkeyPatch, sha: str | None = None) -> None:
    """The real set's entry, with the sha256 of the tiny test archive (or ``sha``)."""
    import dataclasses

    from tasks.data import SOURCES
    (f,) = SOURCES["imdb"].files
    monkeypatch.setitem(SOURCES, "imdb", dataclasses.replace(
        SOURCES["imdb"], files=(dataclasses.replace(f, sha256=sha or sha256(archive)),)))


def test_download_imdb_from_a_mirror(serve, imdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from growrnn.cli import main
    archive = _imdb_archive(imdb_dir, tmp_path / "mirror")
    _mirror_imdb(archive, monkeypatch)
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    assert main(["data", "download", "imdb", "--mirror", serve(tmp_path / "mirror")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "data" / "aclImdb")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["aclImdb"]  # the archive is gone
    task = tasks.get("imdb", vocab_size=50, max_len=6, batch_size=4)  # from $GROWRNN_DATA/aclImdb
    dm = task.datamodule()
    dm.setup()
    assert len(dm.items["test"]) == 8
    assert main(["data", "download", "imdb", "--mirror", "http://127.0.0.1:9/unreachable"]) == 0  # already here


@pytest.mark.parametrize(("extra", "sha", "match"), [
    (None, "0" * 64, "does not match its sha256.*nothing was written"),
    ("../evil.txt", None, "^aclImdb_v1.tar.gz holds '../evil.txt', which is not a plain file under aclImdb/.*"
                          "nothing was written"),
    ("elsewhere/evil.txt", None, "holds 'elsewhere/evil.txt'"),
])
def test_a_bad_imdb_archive_writes_nothing(serve, imdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           extra: str | None, sha: str | None, match: str) -> None:
    archive = _imdb_archive(imdb_dir, tmp_path / "mirror", extra)
    _mirror_imdb(archive, monkeypatch, sha)
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match=match):
        download("imdb", mirror=serve(tmp_path / "mirror"))
    assert not (tmp_path / "data").exists() and not (tmp_path / "evil.txt").exists()


def test_a_download_sweeps_the_scratch_a_killed_one_left(serve, tmp_path: Path, data_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILLed download leaves its ``.download-*`` file (and an extraction its ``.extract-*``
    folder); the next download deletes those untouched for an hour, not one that may be running."""
    import os
    import time
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    folder = tmp_path / "data" / "jsb_chorales"
    folder.mkdir(parents=True)
    old, fresh, extracted = folder / ".download-old", folder / ".download-new", tmp_path / "data" / ".extract-old"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    (extracted / "aclImdb").mkdir(parents=True)
    an_hour_ago = time.time() - 3601
    for path in (old, extracted):
        os.utime(path, (an_hour_ago, an_hour_ago))
    download("jsb", mirror=serve(data_dir))
    assert sorted(p.name for p in folder.iterdir()) == [".download-new", "JSB_Chorales.mat"]
    assert not extracted.exists()
