#!/usr/bin/env bash
# Runs tests/moto.rs (backup uploads, outbox kind backup_upload) against moto, a fake of AWS
# S3 from PyPI.
#
#   1. a venv (target/venv-moto, or $MOTO_VENV) with the pinned moto[server];
#   2. the tests with POSEDGE_MOTO_SERVER set to its moto_server: the test starts it on
#      127.0.0.1 only (-H 127.0.0.1) on a free port, stops it for the outage and starts it
#      again, so no network namespace is needed.
#
# Needs python3 with venv. Exits with the tests' status.
set -euo pipefail
cd "$(dirname "$0")/.."

# moto and everything it imports, pinned to versions seen working on Python 3.11.
PINS=(
  'moto[server]==5.2.5'
  annotated-types==0.8.0
  antlr4-python3-runtime==4.13.2
  attrs==26.1.0
  aws-xray-sdk==2.15.0
  blinker==1.9.0
  boto3==1.44.8
  botocore==1.44.8
  certifi==2026.10.19.post1
  cffi==2.1.1
  cfn-lint==1.58.0
  charset-normalizer==3.5.2
  click==8.5.1
  cryptography==50.0.2
  docker==7.2.0
  Flask==3.1.3
  flask-cors==6.0.5
  graphql-core==3.3.2
  idna==3.20
  itsdangerous==2.2.0
  Jinja2==3.1.6
  jmespath==1.1.0
  joserfc==1.8.0
  jsonpatch==1.48
  jsonpath-ng==1.16.0
  jsonpointer==3.12
  jsonschema==4.26.0
  jsonschema-path==0.5.0
  jsonschema-specifications==2025.9.1
  lazy-object-proxy==1.13.0
  MarkupSafe==3.0.4
  mpmath==1.3.0
  networkx==3.6.1
  openapi-schema-validator==0.9.0
  openapi-spec-validator==0.9.0
  pathable==0.6.0
  py-partiql-parser==0.6.3
  pycparser==3.12
  pydantic==2.14.4
  pydantic-settings==2.16.3
  pydantic_core==2.50.5
  pyparsing==3.3.3
  python-dateutil==2.9.0.post0
  python-dotenv==1.2.4
  PyYAML==6.0.4
  referencing==0.37.0
  regex==2026.11.19
  requests==2.34.2
  responses==0.26.3
  rfc3339-validator==0.1.4
  rpds-py==2026.9.1
  s3transfer==0.19.3
  six==1.17.0
  sympy==1.14.0
  typing-inspection==0.4.5
  typing_extensions==4.16.0
  urllib3==2.8.0
  Werkzeug==3.1.9
  wrapt==2.5.2
  xmltodict==1.0.4
)
VENV=${MOTO_VENV:-$PWD/target/venv-moto}
PYTHON=${PYTHON:-python3}

echo "== moto: venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  echo "+ $PYTHON -m venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "+ $VENV/bin/pip install moto[server]==5.2.5 (and its pinned dependencies)"
"$VENV/bin/pip" install --disable-pip-version-check --quiet "${PINS[@]}"
echo "moto $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))') on $("$VENV/bin/python" --version)"

export POSEDGE_MOTO_SERVER="$VENV/bin/moto_server"
TEST_CMD=(cargo test --locked --test tests moto:: -- --include-ignored --test-threads=1)
echo "+ POSEDGE_MOTO_SERVER=$POSEDGE_MOTO_SERVER ${TEST_CMD[*]}"
"${TEST_CMD[@]}"
