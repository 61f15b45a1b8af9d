"""rsinfer models: every registered model, as a table or JSON."""

import json

import pytest

from rsinfer.cli.main import main


@pytest.mark.slow
def test_models_lists_every_registered_model_as_json(runner):
    from rsinfer.models import list_models

    res = runner.invoke(main, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == list_models()
    simple = next(r for r in rows if r["name"] == "simple-fcn")
    assert simple["tile"] == 256 and simple["classes"] == 6 and simple["params_m"] > 0 and simple["gflops"] > 0
    assert simple["weights"] is None  # random weights
    lite = next(r for r in rows if r["name"] == "lanet-lite")
    assert lite["weights"] == "lanet-lite.synthetic"


def test_models_piped_is_one_unwrapped_line_per_model(runner):
    from rsinfer.models import list_models

    res = runner.invoke(main, ["models", "--no-flops"])  # the runner's stdout is no terminal
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].split("\t")[:3] == ["name", "params_m", "gflops"]
    assert [line.split("\t")[0] for line in lines[1:]] == list_models()
    lite = dict(zip(lines[0].split("\t"), next(x for x in lines if x.startswith("lanet-lite\t")).split("\t")))
    assert lite["weights"] == "lanet-lite.synthetic" and lite["bands"] == "red,green,blue" and lite["gflops"] == ""
