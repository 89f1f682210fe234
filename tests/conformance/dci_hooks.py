"""Schemathesis hooks for the DCI conformance run (tests/e2e/conformance.rs).

- The registry is run as in production: it takes only messages signed by a key it
  trusts. Each generated message is signed here, as the trusted sender, by
  `dtksctl dci-sign` (the signature covers the canonical JSON of header and message,
  which only the project's own code writes byte for byte). A message whose `signature`
  was generated as something other than a string is left alone: it is a negative case.
- A message id is a fresh one each time it is a string, so that two generated
  messages are never taken for a replay of each other; a sender id that is a string
  is the signer's. Neither changes whether a case is valid.
- The bearer token the standard's security scheme asks for is given to schemathesis
  (`-H Authorization: Bearer …`, minted by `dtksctl dci-sign --bearer`), so that its
  own checks can take it away and see the registry refuse.
- Two transport forms the standard offers are not implemented, and are left out of the
  run: each asynchronous operation as a `multipart/form-data` file upload (`FileInfo`;
  refused with 415), and `EncryptedMessage` in place of the message (no encryption key
  is agreed with any sender; refused with 400 `err.encryption.invalid`).
- Two `oneOf`s of the standard cannot mean what they say, and are read as `anyOf`:
  `AttributeValue` lists both `integer` and `number` (so under `oneOf` no whole
  number would be a value), and a status request's `attribute_value` lists
  `TransactionId` and `correlation_id`, the same string schema (so no string would
  be). The registry takes what the `anyOf` admits.

Environment: DTKS_DCTL (path of dtksctl), DTKS_DCI__SIGNING_KEY (the trusted seed),
DTKS_DCI_SENDER (the sender id the registry trusts the key for).
"""

import json
import os
import subprocess
import uuid

import schemathesis

DTKSCTL = os.environ["DTKS_DCTL"]
SENDER = os.environ.get("DTKS_DCI_SENDER", "dtks-matching")


ENCRYPTED = "#/components/schemas/EncryptedMessage"


def _plain(node):
    """The schema without its EncryptedMessage alternatives."""
    if isinstance(node, dict):
        one_of = node.get("oneOf")
        if isinstance(one_of, list) and {"$ref": ENCRYPTED} in one_of:
            node["oneOf"] = [s for s in one_of if s != {"$ref": ENCRYPTED}]
        for value in node.values():
            _plain(value)
    elif isinstance(node, list):
        for value in node:
            _plain(value)


def _any_of(schema):
    if isinstance(schema, dict) and "oneOf" in schema:
        schema["anyOf"] = schema.pop("oneOf")


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    schemas = raw_schema["components"]["schemas"]
    _any_of(schemas["AttributeValue"])
    _any_of(schemas["TxnStatusRequest"]["properties"]["txnstatus_request"]["properties"]["attribute_value"])
    for item in raw_schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                content = operation.get("requestBody", {}).get("content", {})
                content.pop("multipart/form-data", None)
                _plain(operation.get("requestBody", {}))


def _sign(body):
    text = json.dumps({"header": body.get("header"), "message": body.get("message")})
    done = subprocess.run(
        [DTKSCTL, "dci-sign", "--sender", SENDER],
        input=text.encode(),
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


@schemathesis.hook
def before_call(ctx, case, kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    header = body.get("header")
    if isinstance(header, dict):
        if isinstance(header.get("message_id"), str):
            header["message_id"] = str(uuid.uuid4())
        if isinstance(header.get("sender_id"), str):
            header["sender_id"] = SENDER
    if "signature" not in body or isinstance(body.get("signature"), str):
        body["signature"] = _sign(body)
