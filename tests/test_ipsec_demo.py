"""The in-process engine tour (`python -m skip.demo`): it must run and show what it claims."""

from __future__ import annotations

from skip import demo


def test_demo_runs_and_shows_each_outcome(capsys):
    demo.main()
    out = capsys.readouterr().out
    for expected in ("reason 'bad_icv'", "reason 'replay'", "reason 'replay_too_old'",
                     "reason 'bad_spi'", "reason 'legacy_refused'", "AH still verifies",
                     "IP(57) | SKIP", "comes back byte for byte"):
        assert expected in out
