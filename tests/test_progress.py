from rnacli import console as progress


def test_logged_progress_reports_at_once_and_every_30_seconds(monkeypatch, capsys):
    clock = [0.0]
    bar = progress._LoggedProgress(get_time=lambda: clock[0])
    task = bar.add_task("learning", total=1000)
    for _ in range(200):  # 2 s a step: 400 s in all, 20 % of the work
        clock[0] += 2.0
        bar.advance(task)
    lines = capsys.readouterr().err.strip().splitlines()
    # the first step, then every 30 s (15 steps) and the 10 % mark: not only at each tenth
    assert lines[0].startswith("learning: 1/1000 (0 %, ")
    assert "0.5/s" in lines[0] and "eta " in lines[0]
    steps = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert steps == [1, 16, 31, 46, 61, 76, 91, 100, 115, 130, 145, 160, 175, 190, 200]
