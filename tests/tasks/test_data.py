"""Real data loads with the published counts; missing, corrupt and downloaded data behave."""

import functools
import http.server
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
    paths = download(name, mirror=serve(data_dir))
    assert paths and all(sha256(p) == sha256(data_dir / p.relative_to(tmp_path / "data")) for p in paths)
    assert tasks.get(name).spec.name == name  # loads from the downloaded copy


def test_download_refuses_a_bad_copy(serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWRNN_DATA", str(tmp_path / "data"))
    bad = tmp_path / "bad"
    (bad / "jsb_chorales").mkdir(parents=True)
    (bad / "jsb_chorales" / "JSB_Chorales.mat").write_bytes(b"not the file")
    url = serve(bad)
    with pytest.raises(DataError, match="could not fetch .*404"):
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
