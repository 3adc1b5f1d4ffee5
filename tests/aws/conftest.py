"""The integration tests' fixtures (tests/integration/conftest.py: natter_bin, harness, logs
attached to failures) for the AWS SDK suite."""
import importlib.util
import os
import sys

INTEG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
sys.path.insert(0, INTEG)
_spec = importlib.util.spec_from_file_location("natter_integration_conftest",
                                               os.path.join(INTEG, "conftest.py"))
_m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_m)
natter_bin = _m.natter_bin
harness = _m.harness
pytest_runtest_makereport = _m.pytest_runtest_makereport
