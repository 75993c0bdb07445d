"""The environment conftest.py, broker.py and api_common.py read (LK_BIN_DIR and the rest), for a program that
uses them outside ctest: the soak (soak.py) and the benchmarks written in Python (bench/daemon_rss.py). Import
this and call use_build(BUILD) before importing any of those."""
import os
from pathlib import Path


def use_build(build):
    b = Path(build).resolve()
    os.environ.setdefault("LK_BIN_DIR", str(b / "bin"))
    os.environ.setdefault("LK_LIB_DIR", str(b / "lib"))
    os.environ.setdefault("LK_TEST_LIB_DIR", str(b / "tests"))
    os.environ.setdefault("LK_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    os.environ.setdefault("LK_SOFTHSM_UTIL", "/usr/bin/softhsm2-util")
    os.environ.setdefault("LK_SOURCE_DIR", str(Path(__file__).resolve().parents[2]))
