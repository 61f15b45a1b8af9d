"""rsinfer models: every registered model, as a table or JSON."""

import json

from rsinfer.cli.main import main


def test_models_lists_every_registered_model_as_json(runner):
    from rsinfer.models import list_models

    res = runner.invoke(main, ["models", "--json", "--no-flops"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == list_models()
    assert all(r["gflops"] is None and r["params_m"] > 0 for r in rows)
    lite = next(r for r in rows if r["name"] == "lanet-lite")
    assert lite["weights"] == "lanet-lite.synthetic"


def test_models_named_or_matched_are_listed_with_their_flops(runner):
    from rsinfer.models import list_models

    res = runner.invoke(main, ["models", "--json", "simple-fcn", "lanet*"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == ["lanet", "lanet-lite", "simple-fcn"]  # in the registry's order
    simple = rows[-1]
    assert simple["tile"] == 256 and simple["classes"] == 6 and simple["params_m"] > 0 and simple["gflops"] > 0
    assert simple["weights"] is None  # random weights
    assert rows[0]["gflops"] > rows[1]["gflops"] > 0  # the full LANet costs more than its demo variant
    assert len(list_models("lanet*")) == 2


def test_an_unknown_model_name_is_one_line(runner):
    res = runner.invoke(main, ["models", "nosuchnet", "lanet"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "rsinfer: error: no model named nosuchnet; see rsinfer models --no-flops"
    ]


def test_models_piped_is_one_unwrapped_line_per_model(runner):
    from rsinfer.models import list_models

    res = runner.invoke(main, ["models", "--no-flops"])  # the runner's stdout is no terminal
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].split("\t")[:3] == ["name", "params_m", "gflops"]
    assert [line.split("\t")[0] for line in lines[1:]] == list_models()
    lite = dict(zip(lines[0].split("\t"), next(x for x in lines if x.startswith("lanet-lite\t")).split("\t")))
    assert lite["weights"] == "lanet-lite.synthetic" and lite["bands"] == "red,green,blue" and lite["gflops"] == ""


def test_counts_are_kept_in_the_cache_for_the_next_run(runner, tmp_path, monkeypatch):
    from rsinfer.models import complexity

    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path))
    first = runner.invoke(main, ["models", "--json", "simple-fcn", "lanet-lite"])
    assert first.exit_code == 0, first.output
    assert len(list(tmp_path.glob("complexity-*.json"))) == 1

    def no_counting(*args, **kwargs):
        raise AssertionError("counted again")

    monkeypatch.setattr(complexity, "model_complexity", no_counting)
    again = runner.invoke(main, ["models", "--json", "simple-fcn", "lanet-lite"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == json.loads(first.output)

    next(tmp_path.glob("complexity-*.json")).write_text("{not json")  # a damaged cache is only slower
    monkeypatch.undo()
    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path))
    damaged = runner.invoke(main, ["models", "--json", "simple-fcn", "lanet-lite"])
    assert damaged.exit_code == 0 and json.loads(damaged.output) == json.loads(first.output)
