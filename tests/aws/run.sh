#!/usr/bin/env bash
# The AWS SDK v3 suite: installs tests/aws/ and examples/apigw-lambda/ from their
# package-lock.json (npm ci) and drives a real natter-node with
# @aws-sdk/client-apigatewaymanagementapi (test_aws_sdk.py) and runs the migration example
# end to end (test_example.py); pytest via Debian's python3. NATTER_BIN names the binary (default: the newest of build-asan/ and
# build/); NATTER_SKIP_NPM=1 skips npm ci.
set -uo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "aws/run.sh: node not found (scripts/install-deps.sh)" >&2; exit 1; }
if [ "${NATTER_SKIP_NPM:-0}" != 1 ]; then
  for d in . ../../examples/apigw-lambda; do
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error) ||
      { echo "aws/run.sh: npm ci failed in $d" >&2; exit 1; }
  done
fi
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider test_aws_sdk.py test_example.py "$@"
