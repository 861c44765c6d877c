"""The job's console: one progress display, redrawn in place on a terminal, a line now and then
in a log; Ray's own output behind -v."""

import io
import os

from medgen_ray.cli import main
from medgen_ray.core.console import VERBOSE_ENV, JobProgress, verbose


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_writes_a_line_per_interval_and_the_final_state():
    out = io.StringIO()
    p = JobProgress("curate", 4, out, interval_s=3600)
    p.update(kept=2, sources=["a"])  # first update draws (nothing shown yet)
    p.update(rejected=1, sources=["b"])  # within the interval: not drawn
    p.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("curate: 1/4 sources · kept 2 · rejected 0 · errored 0 · 0:00, ~")
    assert lines[1].startswith("curate: 2/4 sources · kept 2 · rejected 1 · errored 0")
    p.finish()  # nothing new: not repeated
    assert len(out.getvalue().splitlines()) == 2


def test_progress_on_a_terminal_redraws_one_line():
    out = Tty()
    p = JobProgress("curate", None, out)
    for i in range(5):
        p.update(kept=1, sources=[f"v{i}"])
    p.finish()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 6 and text.endswith("\n") and text.count("\n") == 1
    assert "curate: 5 sources · kept 5" in text


def test_v_anywhere_on_the_line_turns_ray_output_on(monkeypatch, capsys):
    monkeypatch.setenv(VERBOSE_ENV, "0")  # restored (unset) after the test
    assert not verbose()
    main(["weights", "check", "-v", "--job", "curate", "curate.classify.clip_model=clip/tiny",
          "curate.quality.enabled=false"])
    assert verbose() and os.environ[VERBOSE_ENV] == "1"
