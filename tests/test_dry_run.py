"""`prompthone optimize --dry-run`: the cost estimate and the models a run needs, before any model is installed."""

from __future__ import annotations

from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.lm.availability import model_status

runner = CliRunner()


def test_a_dry_run_needs_no_model_installed_and_says_what_is_missing(tmp_path, monkeypatch):
    import prompthone.lm.local.assemble as assemble

    monkeypatch.setattr(assemble, "is_installed", lambda model: False)  # a machine that installed no model yet
    monkeypatch.setattr(assemble, "ensure_model_file", lambda *a, **k: (_ for _ in ()).throw(AssertionError("load")))
    monkeypatch.chdir(tmp_path)
    args = ["optimize", "--task", "trec-mini", "--optimizer", "mipro", "--dry-run", "--n-train", "20", "--n-val", "20",
            "--n-test", "40",
            "--proposer-model", "openai/qwen@http://127.0.0.1:9/v1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "nothing was spent" in result.output and "task" in result.output
    out = " ".join(result.output.split())
    assert "missing local/qwen2.5-coder-0.5b (task, teacher): embedded model, not installed" in out
    assert "prompthone models install qwen2.5-coder-0.5b" in out
    assert "ok openai/qwen@http://127.0.0.1:9/v1 (proposer)" in out and "not contacted" in out
    assert not (tmp_path / "prompthone-runs").exists()  # no run folder for a dry run


def test_model_status_of_each_kind(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    assert not model_status(f"local/{gguf}").ready
    gguf.write_bytes(b"GGUF")
    assert model_status(f"local/{gguf}").ready
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "OPENAI_API_KEY is not set" in model_status("openai/gpt-4o-mini").note
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    status = model_status("openai/gpt-4o-mini")
    assert status.ready and "sk-test" not in status.note
    assert not model_status("nonsense").ready
