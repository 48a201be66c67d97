"""A trained verifier directory is read as untrusted input: every path stays inside it, only
regular files are read, array sizes are checked before anything is inflated, no pickle runs,
and `verifier.json` follows a schema. Every failure is a `VerifierDirError` (a TTCError)."""

import io
import json
import os
import time
import zipfile

import numpy as np
import pytest

from langgraph_ttc.errors import TTCError
from langgraph_ttc.verifiers.learned import LearnedVerifier, ProbeHead, VerifierDirError

DIM = 8
INFO = {
    "format": 1,
    "kind": "probe",
    "model": "embedded",
    "head": "head.npz",
    "rendering": {"system_prompt": "Solve.", "step_delimiter": "\n\n"},
}


def head(**arrays):
    values = {
        "mean": np.zeros(DIM),
        "scale": np.ones(DIM),
        "coef": np.linspace(-1, 1, DIM),
        "intercept": np.array([0.5]),
    }
    values.update(arrays)
    return {k: v for k, v in values.items() if v is not None}


def probe_dir(path, info=None, arrays=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "verifier.json").write_text(json.dumps(INFO if info is None else info))
    np.savez(path / "head.npz", **(arrays if arrays is not None else head()))
    return path


def load(path):
    with pytest.raises(VerifierDirError) as caught:
        LearnedVerifier(path)
    assert isinstance(caught.value, TTCError) and str(caught.value)
    return str(caught.value)


def test_a_good_probe_directory_loads(tmp_path):
    verifier = LearnedVerifier(probe_dir(tmp_path / "v"))
    assert verifier.head is not None and verifier.head.dim == DIM


def test_no_path_leads_outside_the_directory(tmp_path):
    outside = probe_dir(tmp_path / "outside")
    for name in ("../outside/head.npz", str(outside / "head.npz")):
        assert "relative" in load(probe_dir(tmp_path / "v", {**INFO, "head": name}))
    linked = probe_dir(tmp_path / "linked")
    (linked / "head.npz").unlink()
    (linked / "head.npz").symlink_to(outside / "head.npz")
    assert "outside" in load(linked)
    info_link = probe_dir(tmp_path / "info_link")
    (info_link / "verifier.json").unlink()
    (info_link / "verifier.json").symlink_to(outside / "verifier.json")
    assert "outside" in load(info_link)


def test_a_reward_model_checkpoint_stays_inside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"x")
    reward = {"format": 1, "kind": "reward-model", "checkpoint": "../outside"}
    assert "relative" in load(probe_dir(tmp_path / "rm", reward))
    inside = probe_dir(tmp_path / "rm2", {**reward, "checkpoint": "checkpoint"})
    (inside / "checkpoint").mkdir()
    (inside / "checkpoint" / "model.safetensors").symlink_to(outside / "model.safetensors")
    assert "outside" in load(inside)
    linked = probe_dir(tmp_path / "rm3", {**reward, "checkpoint": "checkpoint"})
    (linked / "checkpoint").symlink_to(outside)
    assert "outside" in load(linked)


def test_a_fifo_head_is_refused_at_once(tmp_path):
    path = probe_dir(tmp_path / "v")
    (path / "head.npz").unlink()
    os.mkfifo(path / "head.npz")
    started = time.monotonic()
    assert "not a regular file" in load(path)
    assert time.monotonic() - started < 5


def test_a_zip_bomb_is_refused_before_it_inflates(tmp_path):
    path = probe_dir(tmp_path / "v")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("scale", "coef", "intercept"):
            array = io.BytesIO()
            np.save(array, head()[name])
            archive.writestr(f"{name}.npy", array.getvalue())
        with archive.open("mean.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (50_000_000,)}
            )
            chunk = bytes(1 << 20)
            for _ in range(64):  # 64 MB of zeros, about 64 KB deflated
                member.write(chunk)
    (path / "head.npz").write_bytes(buffer.getvalue())
    assert os.path.getsize(path / "head.npz") < 1 << 20
    assert "inflates to" in load(path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (head(intercept=None), "no 'intercept'"),
        (head(intercept=np.array([])), "intercept must be one number"),
        (head(coef=np.ones(DIM) * 1j), "not real numbers"),
        (head(coef=np.array(["a"] * DIM)), "not real numbers"),
        (head(scale=np.zeros(DIM)), "scale must be > 0"),
        (head(mean=np.full(DIM, np.nan)), "NaN"),
        (head(coef=np.ones((2, DIM))), "shape"),
        (head(coef=np.ones(DIM + 1)), "one length"),
        (head(coef=np.ones(0), mean=np.ones(0), scale=np.ones(0)), "one length"),
    ],
)
def test_malformed_arrays_are_clear_errors(tmp_path, arrays, message):
    assert message in load(probe_dir(tmp_path / "v", arrays=arrays))


def test_a_pickled_array_never_loads(tmp_path):
    path = probe_dir(tmp_path / "v")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in head().items():
            array = io.BytesIO()
            np.save(array, value if name != "coef" else np.array([object()] * DIM), True)
            archive.writestr(f"{name}.npy", array.getvalue())
    (path / "head.npz").write_bytes(buffer.getvalue())
    assert "not real numbers" in load(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": True}, "format"),
        ({"format": "1"}, "format"),
        ({"format": 2}, "format 2"),
        ({"head": 5}, "head"),
        ({"rendering": "x"}, "rendering"),
        ({"rendering": {"system_prompt": "s"}}, "step_delimiter"),
        ({"rendering": {**INFO["rendering"], "format": 7}}, "rendering.format"),
        ({"model": ["x"]}, "model"),
    ],
)
def test_verifier_json_follows_its_schema(tmp_path, change, message):
    assert message in load(probe_dir(tmp_path / "v", {**INFO, **change}))


def test_unreadable_verifier_json_is_clear(tmp_path):
    path = probe_dir(tmp_path / "v")
    (path / "verifier.json").write_text('{"api_key": "sk-SECRET"')
    assert "SECRET" not in load(path)
    (path / "verifier.json").write_text("[1, 2]")
    assert "'kind' must be one of" in load(path)
    (path / "verifier.json").write_bytes(b"\xff\xfe")
    assert "UTF-8" in load(path)


def test_probe_head_load_checks_a_file_given_directly(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(VerifierDirError, match=r"not an \.npz"):
        ProbeHead.load(tmp_path / "junk.npz")
