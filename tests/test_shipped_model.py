"""The shipped model: the packaged default `separate`, `evaluate` and `describe` fall back to, its
card in the model file, and `benchmarks/starter_model.py ship` writing it from a (stand-in)
training workdir, with the tiny session model in place of the real one."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.paths import REPO, benchmark, config
from vocal_remover_jax import cli
from vocal_remover_jax.inference import packaged
from vocal_remover_jax.inference.model_file import (ModelFileError, file_sha256, load_model_file, read_header,
                                                    save_model_file)

RATE = 22050  # the tiny preset's
CARD = {"name": "test", "summary": "a card", "limitations": ["everything"],
        "heldout_sdr": {"clips": 2, "vocals": {"model": 3.5, "do_nothing": 0.25},
                        "instrumental": {"model": 4.0, "do_nothing": 1.0}}}


@pytest.fixture
def carded(tmp_path, tiny_model):
    _, params, cfg = tiny_model
    path = str(tmp_path / "carded.safetensors")
    save_model_file(path, params, cfg, card=CARD)
    return path


def test_card_round_trips_and_is_covered_by_the_checksum(carded, tiny_model):
    assert read_header(carded)["card"] == CARD
    assert read_header(tiny_model[0])["card"] is None  # a file without a card keeps the old digest
    load_model_file(tiny_model[0])
    data = bytearray(open(carded, "rb").read())
    i = data.index(b"a card")
    data[i : i + 6] = b"A card"  # same length: only the checksum can tell
    tampered = carded.replace("carded", "tampered")
    open(tampered, "wb").write(bytes(data))
    with pytest.raises(ModelFileError, match="tampered.safetensors: checksum mismatch"):
        load_model_file(tampered)


def test_without_a_packaged_model_separate_describe_and_evaluate_explain(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(packaged, "PACKAGED_MODEL", str(tmp_path / "none.safetensors"))
    for argv in (["separate", str(tmp_path / "x.wav")], ["describe"], ["evaluate", str(tmp_path)]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--model" in err and "none.safetensors is missing" in err and "export" in err, err


def test_separate_and_describe_use_the_packaged_model(tmp_path, carded, tiny_model, monkeypatch, capsys):
    monkeypatch.setattr(packaged, "PACKAGED_MODEL", carded)
    song = tmp_path / "song.wav"
    rng = np.random.default_rng(0)
    sf.write(song, (0.2 * rng.standard_normal((RATE, 2))).astype(np.float32), RATE, subtype="FLOAT")
    assert cli.main(["separate", str(song), "-o", str(tmp_path / "default"), "--bit-depth", "float"]) == 0
    assert f"using the packaged model {carded}" in capsys.readouterr().err
    assert cli.main(["separate", str(song), "-o", str(tmp_path / "given"), "--bit-depth", "float", "--quiet",
                     "--model", tiny_model[0]]) == 0
    for stem in ("Instruments", "Vocals"):  # same parameters, same output
        a, _ = sf.read(tmp_path / "default" / f"song_{stem}.wav")
        b, _ = sf.read(tmp_path / "given" / f"song_{stem}.wav")
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert cli.main(["describe"]) == 0
    out = capsys.readouterr().out
    assert f"sha256: {file_sha256(carded)}" in out and "model card: test" in out and "- everything" in out
    assert "vocals" in out and "+3.25" in out and "+3.00" in out  # model - do-nothing
    assert "total" in out and f"{read_header(carded)['num_params']:,}" in out


def test_describe_config_still_works_and_refuses_overrides_on_a_model(tiny_model, capsys):
    assert cli.main(["describe", "--config", config("model.py:tiny")]) == 0
    by_config = capsys.readouterr().out
    assert cli.main(["describe", "--model", tiny_model[0]]) == 0
    by_file = capsys.readouterr().out
    total = lambda text: [line for line in text.splitlines() if line.strip().startswith("total")]
    assert total(by_config) == total(by_file)  # the file's counts are the config's
    assert "no model card" in by_file
    assert cli.main(["describe", "--model", tiny_model[0], "--config.model.depth=2"]) == 2


def test_describe_of_a_model_file_imports_no_training_code(tiny_model):
    code = ("import sys; from vocal_remover_jax import cli; "
            f"assert cli.main(['describe', '--model', {tiny_model[0]!r}]) == 0; "
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'orbax.checkpoint', 'vocal_remover_jax.train', "
            "'vocal_remover_jax.data') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no model card" in result.stdout


def test_the_packaged_model_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(REPO / "pyproject.toml", "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    where = os.path.relpath(os.path.dirname(packaged.PACKAGED_MODEL), REPO).replace(os.sep, ".")
    assert os.path.isfile(os.path.join(os.path.dirname(packaged.PACKAGED_MODEL), "__init__.py"))
    patterns = package_data[where]
    assert any(fnmatch.fnmatch(os.path.basename(packaged.PACKAGED_MODEL), p) for p in patterns)


def test_the_packaged_model_when_present_is_small_intact_and_carded():
    if not os.path.isfile(packaged.PACKAGED_MODEL):
        pytest.skip(f"no packaged model yet ({packaged.PACKAGED_MODEL}; made by benchmarks/starter_model.py ship)")
    assert os.path.getsize(packaged.PACKAGED_MODEL) <= 50 * 2**20
    load_model_file(packaged.PACKAGED_MODEL)
    card = read_header(packaged.PACKAGED_MODEL)["card"]
    files = [d["file"] for d in card["data"]["training"]]
    assert files and not [f for f in files if "_NC-SA" in f]
    assert all(d["attribution"] and d["licence"] for d in card["data"]["training"])
    for stem in ("vocals", "instrumental"):
        assert set(card["heldout_sdr"][stem]) == {"model", "do_nothing", "median_clip_gain"}


# ---- `starter_model.py ship` on a stand-in workdir ----------------------------------------------

def _write_run(run, cfg, params, steps, metrics):
    """A training workdir as the trainer leaves it: config.json, Orbax checkpoints, metrics.jsonl."""
    from vocal_remover_jax.train import checkpoint

    os.makedirs(run, exist_ok=True)
    checkpoint.save_config(str(run), cfg)
    manager = checkpoint.make_manager(str(run / "checkpoints"), keep=3, every=1, asynchronous=False)
    for step, p in steps:
        checkpoint.save(manager, step, {"params": p}, {"global_examples_seen": step * cfg.batch_size})
    manager.wait_until_finished()
    manager.close()
    with open(run / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in metrics)


def _fake_sources(pack, split, leave_out=()):
    rows = [f"| `{n}` | 0:10.00 | repo @abc, `{n}` | CC BY 4.0 | Author of {os.path.basename(n)} | yes |"
            for n in [*split["train"], *split["held_out"], *split["excluded"]] if n not in leave_out]
    text = "\n".join([
        "# pack", "## How the files were made", "1. Trimmed and", "   resampled.", "2. Re-encoded.", "",
        "## Files", "| path | duration | source | licence | attribution | singing |", "|---|---|---|---|---|---|",
        *rows, "", "## Licence texts and notices", "- CC BY 4.0: https://creativecommons.org/licenses/by/4.0/",
        "- CC BY-NC-SA 4.0: https://creativecommons.org/licenses/by-nc-sa/4.0/", "Notice: keep this line.", ""])
    os.makedirs(pack, exist_ok=True)
    (pack / "SOURCES.md").write_text(text)


@pytest.fixture
def workdir(tmp_path, tiny_model):
    """pre/ and ft/ runs (ft started from pre; its latest checkpoint holds the tiny model's parameters), records whose
    tracks are from the split's train part, one held-out mixture and a fake pack's SOURCES.md."""
    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.inference.random_params import random_params

    _, params, _ = tiny_model
    w = tmp_path / "starter"
    for name, steps, metrics in (
            ("pre", [(20, params)], [{"step": 10, "step_time": 0.5}, {"step": 20, "step_time": 0.5}]),
            # finetuning resumed from step 10 after a log at step 15: 5 + 5 + 5 + (5 again) + 5 steps of 1 s
            ("ft", [(10, random_params(load_config(config("model.py:tiny")).model, seed=7)), (20, params)],
             [{"step": 5, "step_time": 1.0}, {"step": 10, "step_time": 1.0}, {"step": 15, "step_time": 1.0},
              {"step": 15, "step_time": 1.0}, {"step": 20, "step_time": 1.0}, {"step": 20, "eval/l1": 0.1}])):
        cfg = load_config(config(f"{'pretrain' if name == 'pre' else 'finetune'}.py:tiny"))
        cfg.checkpoint.every_steps, cfg.batch_size = 10, 8
        cfg.init_from = str(w / "pre") if name == "ft" else ""
        _write_run(w / name, cfg, params, steps, metrics)
    starter = benchmark("starter_model")
    split = starter.load_split()
    tracks = [f"{n.split('/')[0]}:{starter._base(n)}~v1" for n in split["train"]]
    os.makedirs(w / "records")
    (w / "records" / "manifest.json").write_text(json.dumps({"sets": {"vocals": {"train": [{"tracks": tracks}]}}}))
    clip = w / "heldout" / "a+b"
    os.makedirs(clip)
    t = np.arange(2 * RATE) / RATE
    vocals = 0.2 * np.sin(2 * np.pi * 440 * t)[:, None].repeat(2, 1)
    inst = 0.2 * np.random.default_rng(0).standard_normal((len(t), 2))
    for stem, wave in (("mixture", vocals + inst), ("vocals", vocals), ("instrumental", inst)):
        sf.write(clip / f"{stem}.wav", wave.astype(np.float32), RATE, subtype="FLOAT")
    _fake_sources(tmp_path / "pack", split)
    return w, tmp_path / "pack", starter, split


def _ship(starter, w, pack, out, *extra):
    return starter.main(["ship", "--workdir", str(w), "--pack", str(pack), "--hardware", "2-core test CPU",
                         "--out", str(out), *extra])


def test_ship_writes_the_evaluated_model_with_its_card(workdir, tiny_model, tmp_path, monkeypatch, capsys):
    w, pack, starter, split = workdir
    assert starter.main(["evaluate", "--workdir", str(w), "--model", tiny_model[0]]) == 0
    sdr = json.loads((w / "heldout_sdr.json").read_text())["median"]
    capsys.readouterr()
    out = tmp_path / "pkg" / "starter.safetensors"
    assert _ship(starter, w, pack, out) == 0
    printed = capsys.readouterr().out
    assert f"sha256 {file_sha256(str(out))}" in printed
    assert "| | vocals SDR (dB) | instrumental SDR (dB) |" in printed
    assert f"{sdr['vocals_model']:.2f}" in printed and f"{sdr['instrumental_do_nothing']:.2f}" in printed
    assert f"| median of the clips' gains | {sdr['vocals_gain']:+.2f} | {sdr['instrumental_gain']:+.2f} |" in printed
    params, _ = load_model_file(str(out))
    np.testing.assert_array_equal(params["out"]["kernel"], tiny_model[1]["out"]["kernel"])
    card = read_header(str(out))["card"]
    assert [d["file"] for d in card["data"]["training"]] == sorted(split["train"])
    assert card["data"]["training"][0]["attribution"].startswith("Author of ")
    assert "NC-SA" not in json.dumps(card) and "Notice: keep this line." in card["data"]["notices"]
    assert card["data"]["changes"] == "1. Trimmed and resampled.\n2. Re-encoded."  # wrapped lines joined
    assert card["training"]["pretrain"] == {"steps": 20, "batch_size": 8, "seconds": 10}
    assert card["training"]["finetune"]["steps"] == 20 and card["training"]["finetune"]["seconds"] == 25
    assert card["training"]["hardware"] == "2-core test CPU" and card["training"]["seconds"] == 35
    # 4 decimals: the card's difference rounds as `evaluate` prints it (two-decimal medians did not)
    assert card["heldout_sdr"]["vocals"] == {"model": round(sdr["vocals_model"], 4),
                                             "do_nothing": round(sdr["vocals_do_nothing"], 4),
                                             "median_clip_gain": round(sdr["vocals_gain"], 4)}
    assert card["config"]["parameters"] == read_header(str(out))["num_params"]
    assert f"by a median of {sdr['vocals_gain']:+.1f} dB per mixture on the vocals" in card["summary"]

    monkeypatch.setattr(packaged, "PACKAGED_MODEL", str(out))
    assert cli.main(["describe"]) == 0
    shown = capsys.readouterr().out
    assert "Author of vocadito_10.flac" in shown and "2-core test CPU" in shown and "not good at:" in shown
    assert f"{sdr['vocals_gain']:+10.2f}" in shown  # the per-clip gain's column
    assert f"sha256: {file_sha256(str(out))}" in shown


def test_ship_refuses_what_it_must_not_ship(workdir, tiny_model, tmp_path, capsys):
    w, pack, starter, split = workdir
    _scores(w, tiny_model[0], w / "heldout_sdr.json")
    out = tmp_path / "pkg" / "starter.safetensors"

    _fake_sources(pack, split, leave_out=[sorted(split["train"])[0]])  # a training file without attribution
    assert _ship(starter, w, pack, out) == 2
    assert "no attribution for" in capsys.readouterr().err
    _fake_sources(pack, split)

    manifest = json.loads((w / "records" / "manifest.json").read_text())
    manifest["sets"]["vocals"]["train"][0]["tracks"].append("vocals:csd_en001b_NC-SA~v3")
    (w / "records" / "manifest.json").write_text(json.dumps(manifest))
    assert _ship(starter, w, pack, out) == 2
    assert "_NC-SA" in capsys.readouterr().err
    manifest["sets"]["vocals"]["train"][0]["tracks"].pop()
    (w / "records" / "manifest.json").write_text(json.dumps(manifest))

    scores = json.loads((w / "heldout_sdr.json").read_text())  # from an evaluate without per-clip gains
    del scores["median"]["vocals_gain"]
    (w / "older.json").write_text(json.dumps(scores))
    assert _ship(starter, w, pack, out, "--sdr", str(w / "older.json")) == 2
    assert "no per-clip gains" in capsys.readouterr().err

    other = tmp_path / "other.safetensors"  # evaluated, but no finetuning checkpoint
    from vocal_remover_jax.inference.random_params import random_params

    save_model_file(str(other), random_params(tiny_model[2].model, seed=5), tiny_model[2])
    assert _ship(starter, w, pack, out, "--model", str(other), "--sdr", str(_scores(w, other, w / "o.json"))) == 2
    assert "is not a checkpoint of" in capsys.readouterr().err
    assert not out.exists()


def test_ship_takes_an_earlier_checkpoint_and_a_run_without_pretraining(workdir, tiny_model, tmp_path):
    """A checkpoint chosen by validation (step 10 of 20) ships with its own steps and time; a finetuning
    run that did not start from pre/ has no pretraining on its card."""
    from vocal_remover_jax.config import load_config
    from vocal_remover_jax.inference.random_params import random_params

    w, pack, starter, _ = workdir
    earlier = tmp_path / "step10.safetensors"
    cfg = load_config(config("model.py:tiny"))
    save_model_file(str(earlier), random_params(cfg.model, seed=7), cfg)
    run = json.loads((w / "ft" / "config.json").read_text())
    (w / "ft" / "config.json").write_text(json.dumps({**run, "init_from": ""}))
    out = tmp_path / "pkg" / "starter.safetensors"
    assert _ship(starter, w, pack, out, "--model", str(earlier), "--sdr", str(_scores(w, earlier, w / "e.json"))) == 0
    training = read_header(str(out))["card"]["training"]
    assert "pretrain" not in training
    assert training["finetune"] == {"steps": 10, "batch_size": 8, "seconds": 10} and training["seconds"] == 10


def _scores(w, model, path):
    """What `starter_model.py evaluate` writes, with made-up numbers."""
    median = {f"{s}_{who}": 1.0 for s in ("vocals", "instrumental") for who in ("model", "do_nothing")}
    median.update({f"{s}_gain": 0.0 for s in ("vocals", "instrumental")})
    path.write_text(json.dumps({"model": str(model), "clips": [{"name": "a+b", **median}], "median": median}))
    return path


def test_ship_refuses_a_split_that_trains_on_nc_sa(workdir, tmp_path, monkeypatch, capsys):
    w, pack, starter, split = workdir
    _scores(w, "unused.safetensors", w / "heldout_sdr.json")
    split = {**split, "train": {**split["train"], **split["excluded"]}}
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps(split))
    monkeypatch.setattr(starter, "SPLIT_FILE", str(bad))
    assert _ship(starter, w, pack, tmp_path / "m.safetensors") == 2
    assert "CC BY-NC-SA" in capsys.readouterr().err
