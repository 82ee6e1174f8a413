"""docs/walkthrough.md stays true: every block marked ``bash walkthrough`` runs, top to bottom in one bash, on a
small fake download, with the page's own nginx server block (``nginx walkthrough``) serving the shards and a
local S3 server as the bucket; each block must succeed, and the run must show what the page says it shows.

What differs from a real run is only what cannot be the same on a fake, listed here: the values of the variables
the page's first block sets (:func:`variables`), and :data:`SUBSTITUTIONS` (each checked to occur in the page,
so an edit of the page that drops one fails here)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, make_fake
from tests.helpers import ROOT, free_port
from tests.servers import moto_server, nginx

PAGE = ROOT / "docs" / "walkthrough.md"
SUBSTITUTIONS = {
    # a fake is not the real set: its counts are its own (the real set's md5s and counts are validate's default)
    "--expect official": "--expect self",
    # the model: a ResNet-18 for 1 epoch at 64 px on the CPU, with a log line and a checkpoint every 2 steps
    "--arch resnet50": "--arch resnet18 --batch-size 8 --min-res 64 --max-res 64 --val-res 64 --backend torch "
                       "--device cpu --threads 1 --log-every 2 --checkpoint-every 2",
    "--epochs 90": "--epochs 1",
}

torch = pytest.importorskip("torch", reason="the walkthrough trains: it needs torch")
pytest.importorskip("torchvision", reason="the training script builds a torchvision model")
pytest.importorskip("boto3", reason="the walkthrough publishes to a bucket")


def blocks(kind: str) -> list[str]:
    """The page's fenced blocks whose info string is ``<kind> walkthrough``, in order."""
    return re.findall(rf"^```{kind} walkthrough\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


def variables(block: str, values: dict[str, str]) -> str:
    """The first block with each ``NAME=...`` line set to ``values[NAME]`` (every name it sets must have one);
    its other lines (``mkdir``, ``doctor``) as written."""
    names = re.findall(r"^([A-Z_]+)=", block, flags=re.M)
    assert sorted(names) == sorted(values), f"the page's variables changed: {names}"
    return re.sub(r"^([A-Z_]+)=.*$", lambda m: f"{m.group(1)}={values[m.group(1)]}", block, flags=re.M)


@pytest.mark.slow
def test_the_walkthrough_runs_as_written_on_a_fake(tmp_path: Path) -> None:
    page = PAGE.read_text()
    for text in SUBSTITUTIONS:
        assert text in page, f"{text!r} no longer in the page: update SUBSTITUTIONS"
    src = tmp_path / "downloads"
    make_fake(src, FakeOptions(classes=4, train_per_class=12, val_images=8, with_quirks=True, seed=3), quiet=True)
    dest = tmp_path / "shards"
    [server] = blocks("nginx")

    def deployed(port: int) -> str:
        block = server.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        assert block != server and "alias /data/shards/;" in block
        return block.replace("alias /data/shards/;", f"alias {dest}/;")

    with nginx(None, tmp_path / "nginx", server=deployed) as url, moto_server(tmp_path / "moto.log") as endpoint:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "walk", "AWS_SECRET_ACCESS_KEY": "walk-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="walk", aws_secret_access_key="walk-secret",
                     region_name="us-east-1").create_bucket(Bucket="walkthrough")
        first, *rest = blocks("bash")
        values = {"SRC": src, "DEST": dest, "WORK": tmp_path / "work", "BUCKET": "s3://walkthrough/imagenet",
                  "SHARDS_URL": f"{url}/shards", "LOCAL": tmp_path / "local", "CKPT": tmp_path / "ck" / "model.pt",
                  "NODES": 1, "GPUS": 2, "NODE_RANK": 0, "RDZV": f"127.0.0.1:{free_port()}"}
        script = [variables(first, {k: str(v) for k, v in values.items()}), *rest]
        for text, instead in SUBSTITUTIONS.items():
            script = [b.replace(text, instead) for b in script]
        body = "".join(f"echo '=== block {i}'\n{b}" for i, b in enumerate(script, 1))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert out.count("=== block") == len(script)
    assert "verdict: SOUND" in out                                           # validate
    assert "OK: every shard matches its manifest" in out                      # verify --deep
    assert (tmp_path / "work" / "report.html").is_file()                      # report
    staged = tmp_path / "local"
    manifest = json.loads((staged / "train" / "manifest.json").read_text())
    assert all((staged / "train" / s["name"]).is_file() for s in manifest["shards"])
    assert re.search(r"epoch 0 step \d+/\d+ loss [\d.]+ [\d,]+ img/s data wait \d+% size 64 ETA epoch \d+s", out)
    assert "epoch 0 val top1" in out                                          # training validated its epoch
    assert "resumed epoch 1 at step 0" in out                                 # the re-run found the epoch's end
    assert re.search(rf"{re.escape(str(values['CKPT']))} \(epoch 1, \d+ steps\): val top1 [\d.]+ top5 [\d.]+ "
                     r"ReaL top1 [\d.]+ over 8 images", out)                   # evaluate


def test_evaluate_without_a_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    """Step 10 on a checkpoint that is not there: one line naming it, exit 1, before any data is read."""
    missing = tmp_path / "none.pt"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "train_imagenet.py"), "--data", str(tmp_path),
                           "--checkpoint", str(missing), "--evaluate"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.splitlines() == [
        f"train_imagenet.py: {missing}: no such checkpoint to evaluate (name the file a run wrote with --checkpoint)"]
