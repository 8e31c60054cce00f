"""What the configuration costs the daemon in memory: pydantic and the config models.

    .venv/bin/python bench/config_memory.py [--config config/egress-agent.example.toml]

A fresh interpreter first imports the libraries the daemon holds anyway (asyncio, psutil,
pyroute2, msgspec, websockets, http.client), then, step by step, pydantic, the config
package with every model (agent/config/, the collectors' tables through agent/registry.py)
and a config file, and prints the RSS each step adds (VmRSS, MB). The models step also
imports the collectors' packages that hold their tables (collectors/bgp/__init__.py pulls
the whole BGP package), which the daemon imports anyway to run them; so the figure that is
the configuration's own is pydantic_mb plus a part of models_mb. One JSON line last:
{"pydantic_mb": …, "models_mb": …, "load_mb": …, "total_mb": …}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

import asyncio, http.client, ipaddress, logging, socket, tomllib, urllib.request
import msgspec, psutil, pyroute2, websockets
steps = {"base": rss_mb()}
import pydantic
from pydantic import BaseModel, PlainValidator

class First(BaseModel):  # pydantic loads its schema machinery with the first model
    x: int = 0

First(x=1)
steps["pydantic"] = rss_mb()
from agent.config import load_config
from agent.config.root import root_model
root_model()
steps["models"] = rss_mb()
load_config(sys.argv[1])
steps["load"] = rss_mb()
print(json.dumps(steps))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "egress-agent.example.toml"))
    args = parser.parse_args()
    done = subprocess.run([sys.executable, "-c", _CHILD, args.config], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    steps = json.loads(done.stdout)
    result = {
        "pydantic_mb": round(steps["pydantic"] - steps["base"], 2),
        "models_mb": round(steps["models"] - steps["pydantic"], 2),
        "load_mb": round(steps["load"] - steps["models"], 2),
        "total_mb": round(steps["load"] - steps["base"], 2),
    }
    print(f"RSS before: {steps['base']:.1f} MB (the daemon's other libraries)")
    print(f"  + pydantic (pydantic_core, the machinery a first model loads): "
          f"{result['pydantic_mb']} MB")
    print(f"  + the config models and the collectors' packages: {result['models_mb']} MB")
    print(f"  + reading {Path(args.config).name}: {result['load_mb']} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
