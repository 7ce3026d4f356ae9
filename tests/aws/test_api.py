#!/usr/bin/env python3
"""Real-client tests of Stepline's AWS Step Functions API: boto3 and the AWS CLI.

Configured only by the environment:
  STEPLINE_ENDPOINT       e.g. http://127.0.0.1:8099 (required)
  AWS_ACCESS_KEY_ID       access key id (default "test")
  AWS_SECRET_ACCESS_KEY   secret (default "secret")
  STEPLINE_AUTH=1         the server requires SigV4: also run the signature tests

Every resource name carries a per-run random suffix, so the suite can run repeatedly against
the same (persistent) server. Plain unittest: `python3 tests/aws/test_api.py`.
"""

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("STEPLINE_ENDPOINT", "").rstrip("/")
KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "test")
SECRET = os.environ.get("AWS_SECRET_ACCESS_KEY", "secret")
AUTH = os.environ.get("STEPLINE_AUTH", "") == "1"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/stepline-test"
RUN = secrets.token_hex(4)
TARGET_PREFIX = "AWSStepFunctions."

if not ENDPOINT:
    raise SystemExit("set STEPLINE_ENDPOINT (e.g. http://127.0.0.1:8099)")

_counter = 0
_counter_lock = threading.Lock()


def unique(what):
    """A resource name unique to this run (and to this call)."""
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    return f"sl-{what}-{RUN}-{n}"


def make_client(key_id=KEY_ID, secret=SECRET, read_timeout=70):
    return boto3.client(
        "stepfunctions",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            inject_host_prefix=False,
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=read_timeout,
        ),
    )


SFN = make_client()


def pass_definition(result="done", comment=None):
    d = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": result, "End": True}}}
    if comment:
        d["Comment"] = comment
    return json.dumps(d)


def wait_definition(seconds, result="waited"):
    return json.dumps(
        {
            "StartAt": "W",
            "States": {
                "W": {"Type": "Wait", "Seconds": seconds, "Next": "P"},
                "P": {"Type": "Pass", "Result": result, "End": True},
            },
        }
    )


def activity_definition(activity_arn, **task_fields):
    task = {"Type": "Task", "Resource": activity_arn, "End": True}
    task.update(task_fields)
    return json.dumps({"StartAt": "Work", "States": {"Work": task}})


def error_code(exc):
    return exc.response["Error"]["Code"]


def raw_request(target, body, key_id=KEY_ID, secret=SECRET, sign=True, tamper=None):
    """POSTs `body` (bytes) to the endpoint with X-Amz-Target `target`, SigV4-signed with
    botocore's signer unless `sign` is false. `tamper(body) -> body` modifies the body after
    signing. Returns (http status, parsed JSON body or raw text)."""
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    if target is not None:
        headers["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=ENDPOINT + "/", data=body, headers=headers)
    if sign:
        SigV4Auth(Credentials(key_id, secret), "states", REGION).add_auth(req)
    prepared = req.prepare()
    data = prepared.body if tamper is None else tamper(prepared.body)
    out_headers = {k: v for k, v in prepared.headers.items()}
    out_headers["Content-Length"] = str(len(data))
    request = urllib.request.Request(
        prepared.url, data=data, headers=out_headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_status(arn, statuses=("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"), timeout=20):
    deadline = time.time() + timeout
    while True:
        d = SFN.describe_execution(executionArn=arn)
        if d["status"] in statuses:
            return d
        if time.time() > deadline:
            raise AssertionError(f"{arn} still {d['status']} after {timeout}s")
        time.sleep(0.1)


def full_history(arn, **kw):
    events, token = [], None
    while True:
        args = dict(executionArn=arn, **kw)
        if token:
            args["nextToken"] = token
        page = SFN.get_execution_history(**args)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def poll_task(activity_arn, timeout, worker_name=None):
    """GetActivityTask in a daemon thread; returns the response, or None if nothing within
    `timeout` seconds (the abandoned long poll may still take a later task)."""
    box = {}

    def run():
        try:
            args = {"activityArn": activity_arn}
            if worker_name:
                args["workerName"] = worker_name
            box["resp"] = make_client().get_activity_task(**args)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("resp")


class ActivityWorker(threading.Thread):
    """A boto3 activity worker: GetActivityTask → SendTaskHeartbeat → handler's verdict
    (("success", output) or ("failure", error, cause)) for `max_tasks` tasks."""

    def __init__(self, activity_arn, worker_name, handler, max_tasks):
        super().__init__(daemon=True)
        self.client = make_client()
        self.activity_arn = activity_arn
        self.worker_name = worker_name
        self.handler = handler
        self.max_tasks = max_tasks
        self.handled = []
        self.errors = []

    def run(self):
        try:
            while len(self.handled) < self.max_tasks:
                resp = self.client.get_activity_task(
                    activityArn=self.activity_arn, workerName=self.worker_name
                )
                token = resp.get("taskToken")
                if not token:
                    continue
                task_input = json.loads(resp["input"])
                self.client.send_task_heartbeat(taskToken=token)
                verdict = self.handler(task_input)
                if verdict[0] == "success":
                    self.client.send_task_success(taskToken=token, output=json.dumps(verdict[1]))
                else:
                    self.client.send_task_failure(
                        taskToken=token, error=verdict[1], cause=verdict[2]
                    )
                self.handled.append((task_input, verdict))
        except Exception as e:  # noqa: BLE001 - checked by the test
            self.errors.append(e)


# Activities the worker tests use, created once before the tests run. Stepline's coordinator
# caches the set of known activities for up to 1 s, so an execution that reaches a Task of an
# activity created less than 1 s earlier fails with States.Runtime "The activity … does not
# exist." (see test_execution_right_after_create_activity). Creating them up front and settling
# once keeps the other tests independent of that bug.
ACTIVITY_POOL = []
ACTIVITY_SETTLE_SECONDS = 1.2


def setUpModule():
    for _ in range(10):
        ACTIVITY_POOL.append(SFN.create_activity(name=unique("pool"))["activityArn"])
    time.sleep(ACTIVITY_SETTLE_SECONDS)


def tearDownModule():
    for arn in ACTIVITY_POOL:
        try:
            SFN.delete_activity(activityArn=arn)
        except ClientError:
            pass


def pooled_activity():
    return ACTIVITY_POOL.pop()


class Base(unittest.TestCase):
    maxDiff = None

    def assertClientError(self, code, fn, *args, **kwargs):
        with self.assertRaises(ClientError) as cm:
            fn(*args, **kwargs)
        self.assertEqual(error_code(cm.exception), code, cm.exception.response)
        return cm.exception

    def create_sm(self, definition=None, name=None, type_="STANDARD", tags=None):
        args = dict(
            name=name or unique("sm"),
            definition=definition or pass_definition(),
            roleArn=ROLE,
            type=type_,
        )
        if tags:
            args["tags"] = tags
        arn = SFN.create_state_machine(**args)["stateMachineArn"]
        self.addCleanup(self._quiet, SFN.delete_state_machine, stateMachineArn=arn)
        return arn

    def create_activity(self, name=None):
        arn = SFN.create_activity(name=name or unique("act"))["activityArn"]
        self.addCleanup(self._quiet, SFN.delete_activity, activityArn=arn)
        return arn

    def stop_later(self, execution_arn):
        self.addCleanup(self._quiet, SFN.stop_execution, executionArn=execution_arn)

    @staticmethod
    def _quiet(fn, **kwargs):
        try:
            fn(**kwargs)
        except ClientError:
            pass

    @staticmethod
    def missing_arn(arn, kind):
        """A well-formed ARN of `kind` in `arn`'s account/region that does not exist."""
        parts = arn.split(":")
        base = ":".join(parts[:5])
        if kind == "execution":
            return f"{base}:execution:{unique('nosm')}:{unique('noexec')}"
        return f"{base}:{kind}:{unique('missing')}"


# ---------------------------------------------------------------------------------------------
# State machines
# ---------------------------------------------------------------------------------------------


class StateMachineTests(Base):
    def test_create_state_machine(self):
        name = unique("create")
        definition = pass_definition(comment="created by the suite")
        resp = SFN.create_state_machine(name=name, definition=definition, roleArn=ROLE)
        arn = resp["stateMachineArn"]
        self.addCleanup(self._quiet, SFN.delete_state_machine, stateMachineArn=arn)
        self.assertTrue(arn.startswith("arn:aws:states:"), arn)
        self.assertTrue(arn.endswith(f":stateMachine:{name}"), arn)
        self.assertIn("creationDate", resp)
        # Identical re-create: same ARN, no error.
        again = SFN.create_state_machine(name=name, definition=definition, roleArn=ROLE)
        self.assertEqual(again["stateMachineArn"], arn)
        self.assertEqual(again["creationDate"], resp["creationDate"])

    def test_create_state_machine_idempotent_ignores_role_and_tags(self):
        # AWS: the idempotency check covers name, definition and type; a different roleArn or
        # tags is ignored and not applied.
        name = unique("idemrole")
        arn = self.create_sm(name=name, tags=[{"key": "k", "value": "1"}])
        again = SFN.create_state_machine(
            name=name,
            definition=pass_definition(),
            roleArn=ROLE + "-other",
            tags=[{"key": "k", "value": "2"}],
        )
        self.assertEqual(again["stateMachineArn"], arn)
        self.assertEqual(SFN.describe_state_machine(stateMachineArn=arn)["roleArn"], ROLE)
        self.assertEqual(tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"k": "1"})

    def test_create_state_machine_already_exists(self):
        name = unique("exists")
        self.create_sm(name=name, definition=pass_definition("a"))
        self.assertClientError(
            "StateMachineAlreadyExists",
            SFN.create_state_machine,
            name=name,
            definition=pass_definition("b"),
            roleArn=ROLE,
        )

    def test_create_state_machine_invalid_definition(self):
        for bad in [
            "{not json",
            json.dumps({"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": True}}}),
            json.dumps({"StartAt": "A", "States": {"A": {"Type": "Bogus", "End": True}}}),
        ]:
            with self.subTest(definition=bad):
                e = self.assertClientError(
                    "InvalidDefinition",
                    SFN.create_state_machine,
                    name=unique("invalid"),
                    definition=bad,
                    roleArn=ROLE,
                )
                message = e.response["Error"]["Message"]
                # AWS's wording, once: "Invalid State Machine Definition: '<CODE>: … at <pointer>'".
                self.assertTrue(message.startswith("Invalid State Machine Definition: '"), message)
                self.assertEqual(message.count("Invalid State Machine Definition"), 1, message)

    def test_create_state_machine_invalid_name(self):
        for bad in ["has space", "semi;colon", "x" * 81, "brace{"]:
            with self.subTest(name=bad):
                self.assertClientError(
                    "InvalidName",
                    SFN.create_state_machine,
                    name=bad,
                    definition=pass_definition(),
                    roleArn=ROLE,
                )

    def test_describe_state_machine(self):
        name = unique("describe")
        definition = pass_definition(comment="described")
        arn = self.create_sm(name=name, definition=definition)
        d = SFN.describe_state_machine(stateMachineArn=arn)
        self.assertEqual(d["stateMachineArn"], arn)
        self.assertEqual(d["name"], name)
        self.assertEqual(d["status"], "ACTIVE")
        self.assertEqual(d["type"], "STANDARD")
        self.assertEqual(d["roleArn"], ROLE)
        self.assertEqual(json.loads(d["definition"]), json.loads(definition))
        self.assertTrue(d.get("revisionId"))
        self.assertIn("creationDate", d)

    def test_describe_state_machine_does_not_exist(self):
        arn = self.create_sm()
        self.assertClientError(
            "StateMachineDoesNotExist",
            SFN.describe_state_machine,
            stateMachineArn=self.missing_arn(arn, "stateMachine"),
        )

    def test_invalid_arn(self):
        self.assertClientError("InvalidArn", SFN.describe_state_machine, stateMachineArn="not-an-arn")
        self.assertClientError("InvalidArn", SFN.describe_execution, executionArn="not-an-arn")
        self.assertClientError("InvalidArn", SFN.describe_activity, activityArn="not-an-arn")
        self.assertClientError("InvalidArn", SFN.list_tags_for_resource, resourceArn="not-an-arn")
        self.assertClientError("InvalidArn", SFN.list_executions, stateMachineArn="not-an-arn")
        self.assertClientError(
            "InvalidArn", SFN.start_execution, stateMachineArn="arn:aws:s3:::bucket"
        )

    def test_update_state_machine(self):
        arn = self.create_sm(definition=wait_definition(1, "v1"))
        before = SFN.describe_state_machine(stateMachineArn=arn)
        running = SFN.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        resp = SFN.update_state_machine(stateMachineArn=arn, definition=wait_definition(0, "v2"))
        self.assertIn("updateDate", resp)
        self.assertTrue(resp.get("revisionId"))
        self.assertNotEqual(resp["revisionId"], before["revisionId"])
        after = SFN.describe_state_machine(stateMachineArn=arn)
        self.assertEqual(after["revisionId"], resp["revisionId"])
        self.assertEqual(json.loads(after["definition"]), json.loads(wait_definition(0, "v2")))
        # The running execution keeps its definition.
        for_exec = SFN.describe_state_machine_for_execution(executionArn=running)
        self.assertEqual(for_exec["stateMachineArn"], arn)
        self.assertEqual(json.loads(for_exec["definition"]), json.loads(wait_definition(1, "v1")))
        self.assertEqual(for_exec["revisionId"], before["revisionId"])
        done = wait_status(running)
        self.assertEqual(done["status"], "SUCCEEDED")
        self.assertEqual(json.loads(done["output"]), "v1")
        # A new execution runs the new definition.
        fresh = SFN.start_execution(stateMachineArn=arn)["executionArn"]
        self.assertEqual(json.loads(wait_status(fresh)["output"]), "v2")
        fresh_sm = SFN.describe_state_machine_for_execution(executionArn=fresh)
        self.assertEqual(fresh_sm["revisionId"], resp["revisionId"])

    def test_update_state_machine_invalid(self):
        arn = self.create_sm()
        self.assertClientError("MissingRequiredParameter", SFN.update_state_machine, stateMachineArn=arn)
        self.assertClientError(
            "InvalidDefinition", SFN.update_state_machine, stateMachineArn=arn, definition="{}"
        )
        self.assertClientError(
            "StateMachineDoesNotExist",
            SFN.update_state_machine,
            stateMachineArn=self.missing_arn(arn, "stateMachine"),
            definition=pass_definition(),
        )

    def test_delete_state_machine(self):
        arn = SFN.create_state_machine(
            name=unique("delete"), definition=pass_definition(), roleArn=ROLE
        )["stateMachineArn"]
        SFN.describe_state_machine(stateMachineArn=arn)
        SFN.delete_state_machine(stateMachineArn=arn)
        deadline = time.time() + 5
        while True:
            try:
                d = SFN.describe_state_machine(stateMachineArn=arn)
                self.assertEqual(d["status"], "DELETING")
            except ClientError as e:
                self.assertEqual(error_code(e), "StateMachineDoesNotExist")
                break
            self.assertLess(time.time(), deadline, "state machine still DELETING after 5 s")
            time.sleep(0.1)
        self.assertClientError("StateMachineDoesNotExist", SFN.start_execution, stateMachineArn=arn)
        names = [sm["stateMachineArn"] for sm in SFN.list_state_machines(maxResults=1000)["stateMachines"]]
        self.assertNotIn(arn, names)

    def test_list_state_machines_pagination(self):
        mine = {self.create_sm() for _ in range(3)}
        seen, token, pages = [], None, 0
        while True:
            args = {"maxResults": 1}
            if token:
                args["nextToken"] = token
            page = SFN.list_state_machines(**args)
            pages += 1
            self.assertLessEqual(len(page["stateMachines"]), 1)
            for sm in page["stateMachines"]:
                self.assertIn("name", sm)
                self.assertIn(sm["type"], ("STANDARD", "EXPRESS"))
                self.assertIn("creationDate", sm)
            seen += [sm["stateMachineArn"] for sm in page["stateMachines"]]
            token = page.get("nextToken")
            if not token:
                break
            self.assertLess(pages, 5000)
        self.assertEqual(len(seen), len(set(seen)), "a state machine was listed twice")
        self.assertTrue(mine <= set(seen), mine - set(seen))
        self.assertGreaterEqual(pages, 3)

    def test_list_state_machines_invalid_token(self):
        self.assertClientError("InvalidToken", SFN.list_state_machines, nextToken="garbage!!")

    def test_validate_definition_ok(self):
        resp = SFN.validate_state_machine_definition(definition=pass_definition())
        self.assertEqual(resp["result"], "OK")
        self.assertEqual(resp["diagnostics"], [])

    def test_validate_definition_fail(self):
        resp = SFN.validate_state_machine_definition(
            definition=json.dumps(
                {"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": True}}}
            )
        )
        self.assertEqual(resp["result"], "FAIL")
        self.assertGreaterEqual(len(resp["diagnostics"]), 1)
        for d in resp["diagnostics"]:
            self.assertEqual(d["severity"], "ERROR")
            self.assertTrue(d["code"], d)
            self.assertTrue(d["message"], d)
            self.assertTrue(d["location"], d)
        self.assertIs(resp.get("truncated"), False)

    def test_validate_definition_not_json(self):
        resp = SFN.validate_state_machine_definition(definition="{oops")
        self.assertEqual(resp["result"], "FAIL")
        self.assertTrue(resp["diagnostics"][0]["code"])


# ---------------------------------------------------------------------------------------------
# Executions
# ---------------------------------------------------------------------------------------------


class ExecutionTests(Base):
    def test_start_and_describe_execution(self):
        arn = self.create_sm(
            definition=json.dumps(
                {
                    "StartAt": "P",
                    "States": {
                        "P": {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}, "End": True}
                    },
                }
            )
        )
        name = unique("exec")
        resp = SFN.start_execution(stateMachineArn=arn, name=name, input='{"n": 21}')
        exec_arn = resp["executionArn"]
        self.assertTrue(exec_arn.endswith(f":{name}"), exec_arn)
        self.assertIn(":execution:", exec_arn)
        self.assertIn("startDate", resp)
        d = wait_status(exec_arn)
        self.assertEqual(d["status"], "SUCCEEDED")
        self.assertEqual(d["executionArn"], exec_arn)
        self.assertEqual(d["stateMachineArn"], arn)
        self.assertEqual(d["name"], name)
        self.assertEqual(json.loads(d["input"]), {"n": 21})
        self.assertEqual(json.loads(d["output"]), {"doubled": 42})
        self.assertGreaterEqual(d["stopDate"], d["startDate"])

    def test_start_execution_idempotent_name(self):
        arn = self.create_sm(definition=wait_definition(3))
        name = unique("idem")
        first = SFN.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')
        self.stop_later(first["executionArn"])
        second = SFN.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')
        self.assertEqual(second["executionArn"], first["executionArn"])
        self.assertEqual(second["startDate"], first["startDate"])
        self.assertClientError(
            "ExecutionAlreadyExists",
            SFN.start_execution,
            stateMachineArn=arn,
            name=name,
            input='{"a": 2}',
        )
        listed = SFN.list_executions(stateMachineArn=arn)["executions"]
        self.assertEqual([e["executionArn"] for e in listed], [first["executionArn"]])

    def test_start_execution_name_reuse_after_close(self):
        # AWS: "When the original execution is closed, ExecutionAlreadyExists is returned
        # regardless of input."
        arn = self.create_sm()
        name = unique("closed")
        first = SFN.start_execution(stateMachineArn=arn, name=name, input="{}")
        wait_status(first["executionArn"])
        self.assertClientError(
            "ExecutionAlreadyExists", SFN.start_execution, stateMachineArn=arn, name=name, input="{}"
        )

    def test_start_execution_invalid_input(self):
        arn = self.create_sm()
        for bad in ["{not json", "[1, 2", '{"a": }']:
            with self.subTest(input=bad):
                self.assertClientError(
                    "InvalidExecutionInput", SFN.start_execution, stateMachineArn=arn, input=bad
                )

    def test_start_execution_invalid_name(self):
        arn = self.create_sm()
        self.assertClientError(
            "InvalidName", SFN.start_execution, stateMachineArn=arn, name="bad name"
        )

    def test_start_execution_oversized_input(self):
        arn = self.create_sm()
        big = json.dumps({"blob": "x" * (260 * 1024)})
        self.assertGreater(len(big), 256 * 1024)
        self.assertClientError(
            "InvalidExecutionInput", SFN.start_execution, stateMachineArn=arn, input=big
        )

    def test_start_execution_state_machine_does_not_exist(self):
        arn = self.create_sm()
        missing = self.missing_arn(arn, "stateMachine")
        self.assertClientError("StateMachineDoesNotExist", SFN.start_execution, stateMachineArn=missing)
        self.assertClientError("StateMachineDoesNotExist", SFN.list_executions, stateMachineArn=missing)

    def test_start_sync_execution_express(self):
        arn = self.create_sm(
            type_="EXPRESS",
            definition=json.dumps(
                {
                    "StartAt": "Greet",
                    "States": {
                        "Greet": {
                            "Type": "Pass",
                            "Parameters": {"greeting.$": "States.Format('hello {}', $.who)"},
                            "End": True,
                        }
                    },
                }
            ),
        )
        self.assertEqual(SFN.describe_state_machine(stateMachineArn=arn)["type"], "EXPRESS")
        name = unique("sync")
        resp = SFN.start_sync_execution(stateMachineArn=arn, name=name, input='{"who": "bob"}')
        self.assertEqual(resp["status"], "SUCCEEDED", resp)
        self.assertEqual(json.loads(resp["output"]), {"greeting": "hello bob"})
        self.assertEqual(json.loads(resp["input"]), {"who": "bob"})
        self.assertEqual(resp["stateMachineArn"], arn)
        self.assertEqual(resp["name"], name)
        self.assertTrue(resp["executionArn"].endswith(name) or name in resp["executionArn"])
        self.assertGreaterEqual(resp["stopDate"], resp["startDate"])
        self.assertIn("billingDetails", resp)

    def test_start_sync_execution_express_failure(self):
        arn = self.create_sm(
            type_="EXPRESS",
            definition=json.dumps(
                {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Nope", "Cause": "said no"}}}
            ),
        )
        resp = SFN.start_sync_execution(stateMachineArn=arn, input="{}")
        self.assertEqual(resp["status"], "FAILED")
        self.assertEqual(resp["error"], "Nope")
        self.assertEqual(resp["cause"], "said no")
        self.assertNotIn("output", resp)

    def test_start_sync_execution_standard_not_supported(self):
        arn = self.create_sm()
        self.assertClientError(
            "StateMachineTypeNotSupported", SFN.start_sync_execution, stateMachineArn=arn
        )

    def test_stop_execution(self):
        arn = self.create_sm(definition=wait_definition(30))
        exec_arn = SFN.start_execution(stateMachineArn=arn)["executionArn"]
        running = SFN.describe_execution(executionArn=exec_arn)
        self.assertEqual(running["status"], "RUNNING")
        self.assertNotIn("stopDate", running)
        self.assertNotIn("output", running)
        resp = SFN.stop_execution(executionArn=exec_arn, error="Test.Stop", cause="stopped by the suite")
        self.assertIn("stopDate", resp)
        d = wait_status(exec_arn, timeout=5)
        self.assertEqual(d["status"], "ABORTED")
        self.assertIn("stopDate", d)
        self.assertNotIn("output", d)
        last = SFN.get_execution_history(executionArn=exec_arn, reverseOrder=True, maxResults=1)["events"][0]
        self.assertEqual(last["type"], "ExecutionAborted")
        self.assertEqual(last["executionAbortedEventDetails"]["error"], "Test.Stop")
        self.assertEqual(last["executionAbortedEventDetails"]["cause"], "stopped by the suite")

    def test_execution_does_not_exist(self):
        sm = self.create_sm()
        missing = sm.replace(":stateMachine:", ":execution:") + ":" + unique("nope")
        self.assertClientError("ExecutionDoesNotExist", SFN.describe_execution, executionArn=missing)
        self.assertClientError("ExecutionDoesNotExist", SFN.stop_execution, executionArn=missing)
        self.assertClientError("ExecutionDoesNotExist", SFN.get_execution_history, executionArn=missing)
        self.assertClientError(
            "ExecutionDoesNotExist", SFN.describe_state_machine_for_execution, executionArn=missing
        )

    def test_list_executions(self):
        arn = self.create_sm()
        done = [SFN.start_execution(stateMachineArn=arn, name=unique("le"))["executionArn"] for _ in range(3)]
        for e in done:
            wait_status(e)
        waiter = self.create_sm(definition=wait_definition(30))
        running = SFN.start_execution(stateMachineArn=waiter)["executionArn"]
        self.stop_later(running)

        # Pagination with maxResults=1.
        seen, token, pages = [], None, 0
        while True:
            args = {"stateMachineArn": arn, "maxResults": 1}
            if token:
                args["nextToken"] = token
            page = SFN.list_executions(**args)
            pages += 1
            self.assertLessEqual(len(page["executions"]), 1)
            for e in page["executions"]:
                self.assertEqual(e["stateMachineArn"], arn)
                self.assertEqual(e["status"], "SUCCEEDED")
                self.assertIn("startDate", e)
                self.assertIn("stopDate", e)
            seen += [e["executionArn"] for e in page["executions"]]
            token = page.get("nextToken")
            if not token:
                break
            self.assertLess(pages, 10)
        self.assertEqual(sorted(seen), sorted(done))
        # AWS lists the most recent execution first.
        listed = SFN.list_executions(stateMachineArn=arn)["executions"]
        starts = [e["startDate"] for e in listed]
        self.assertEqual(starts, sorted(starts, reverse=True))

        # statusFilter.
        succeeded = SFN.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"]
        self.assertEqual(sorted(e["executionArn"] for e in succeeded), sorted(done))
        self.assertEqual(SFN.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"], [])
        run_list = SFN.list_executions(stateMachineArn=waiter, statusFilter="RUNNING")["executions"]
        self.assertEqual([e["executionArn"] for e in run_list], [running])
        self.assertNotIn("stopDate", run_list[0])
        self.assertEqual(SFN.list_executions(stateMachineArn=waiter, statusFilter="SUCCEEDED")["executions"], [])

    def test_list_executions_invalid_token(self):
        arn = self.create_sm()
        self.assertClientError("InvalidToken", SFN.list_executions, stateMachineArn=arn, nextToken="***")

    def test_get_execution_history(self):
        arn = self.create_sm(
            definition=json.dumps(
                {
                    "StartAt": "A",
                    "States": {
                        "A": {"Type": "Pass", "Result": {"a": 1}, "ResultPath": "$.a", "Next": "B"},
                        "B": {"Type": "Pass", "Result": {"b": 2}, "ResultPath": "$.b", "Next": "C"},
                        "C": {"Type": "Pass", "End": True},
                    },
                }
            )
        )
        exec_arn = SFN.start_execution(stateMachineArn=arn, input='{"secret": "s3cr3t"}')["executionArn"]
        self.assertEqual(wait_status(exec_arn)["status"], "SUCCEEDED")

        everything = SFN.get_execution_history(executionArn=exec_arn)
        events = everything["events"]
        self.assertNotIn("nextToken", everything)
        types = [e["type"] for e in events]
        self.assertEqual(
            types,
            ["ExecutionStarted"]
            + ["PassStateEntered", "PassStateExited"] * 3
            + ["ExecutionSucceeded"],
        )
        ids = [e["id"] for e in events]
        self.assertEqual(ids, list(range(1, len(events) + 1)))
        # As in AWS, the first state's StateEntered has previousEventId 0.
        self.assertEqual(events[1]["previousEventId"], 0)
        self.assertEqual([e["previousEventId"] for e in events[2:]], ids[1:-1])
        self.assertEqual(
            json.loads(events[0]["executionStartedEventDetails"]["input"]), {"secret": "s3cr3t"}
        )
        self.assertEqual(events[1]["stateEnteredEventDetails"]["name"], "A")
        self.assertEqual(
            json.loads(events[-1]["executionSucceededEventDetails"]["output"]),
            {"secret": "s3cr3t", "a": {"a": 1}, "b": {"b": 2}},
        )

        # maxResults + nextToken.
        paged, token, sizes = [], None, []
        while True:
            args = {"executionArn": exec_arn, "maxResults": 3}
            if token:
                args["nextToken"] = token
            page = SFN.get_execution_history(**args)
            sizes.append(len(page["events"]))
            paged += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        self.assertEqual(sizes, [3, 3, 2])
        self.assertEqual([e["id"] for e in paged], ids)

        # reverseOrder (also paged).
        rev = SFN.get_execution_history(executionArn=exec_arn, reverseOrder=True)["events"]
        self.assertEqual([e["id"] for e in rev], ids[::-1])
        rev_paged = full_history(exec_arn, reverseOrder=True, maxResults=5)
        self.assertEqual([e["id"] for e in rev_paged], ids[::-1])

        # includeExecutionData=False strips inputs and outputs.
        bare = SFN.get_execution_history(executionArn=exec_arn, includeExecutionData=False)["events"]
        self.assertEqual([e["type"] for e in bare], types)
        self.assertNotIn("s3cr3t", json.dumps(bare, default=str))
        started = bare[0].get("executionStartedEventDetails", {})
        self.assertNotIn("input", started)
        for e in bare:
            for key, details in e.items():
                if key.endswith("EventDetails"):
                    self.assertNotIn("input", details, e)
                    self.assertNotIn("output", details, e)

    def test_get_execution_history_invalid_token(self):
        arn = self.create_sm()
        exec_arn = SFN.start_execution(stateMachineArn=arn)["executionArn"]
        wait_status(exec_arn)
        self.assertClientError(
            "InvalidToken", SFN.get_execution_history, executionArn=exec_arn, nextToken="garbage!!"
        )

    def test_describe_state_machine_for_execution(self):
        definition = pass_definition("for-exec")
        name = unique("forexec")
        arn = self.create_sm(name=name, definition=definition)
        exec_arn = SFN.start_execution(stateMachineArn=arn)["executionArn"]
        d = SFN.describe_state_machine_for_execution(executionArn=exec_arn)
        self.assertEqual(d["stateMachineArn"], arn)
        self.assertEqual(d["name"], name)
        self.assertEqual(json.loads(d["definition"]), json.loads(definition))
        self.assertEqual(d["roleArn"], ROLE)
        self.assertIn("updateDate", d)
        self.assertEqual(d["revisionId"], SFN.describe_state_machine(stateMachineArn=arn)["revisionId"])


# ---------------------------------------------------------------------------------------------
# Raw protocol
# ---------------------------------------------------------------------------------------------


class ProtocolTests(Base):
    def test_unknown_action(self):
        status, body = raw_request(TARGET_PREFIX + "Nope", b"{}")
        self.assertEqual(status, 400, body)
        self.assertEqual(body["__type"].split("#")[-1], "UnknownOperationException", body)

    def test_malformed_json_body(self):
        status, body = raw_request(TARGET_PREFIX + "ListStateMachines", b"{this is not json")
        self.assertEqual(status, 400, body)
        self.assertEqual(body["__type"].split("#")[-1], "SerializationException", body)

    def test_raw_list_state_machines(self):
        arn = self.create_sm()
        status, body = raw_request(TARGET_PREFIX + "ListStateMachines", b'{"maxResults": 1000}')
        self.assertEqual(status, 200, body)
        self.assertIn(arn, [sm["stateMachineArn"] for sm in body["stateMachines"]])
        created = [sm for sm in body["stateMachines"] if sm["stateMachineArn"] == arn][0]
        self.assertIsInstance(created["creationDate"], (int, float))

    def test_oversized_body(self):
        arn = self.create_sm()
        body = json.dumps(
            {"stateMachineArn": arn, "input": json.dumps({"blob": "y" * (1200 * 1024)})}
        ).encode()
        self.assertGreater(len(body), 1024 * 1024)
        status, resp = raw_request(TARGET_PREFIX + "StartExecution", body)
        self.assertTrue(400 <= status < 500, (status, resp))
        self.assertIsInstance(resp, dict, resp)
        self.assertIn("__type", resp)
        # The server still answers afterwards.
        self.assertEqual(SFN.describe_state_machine(stateMachineArn=arn)["stateMachineArn"], arn)

    def test_missing_required_member(self):
        status, body = raw_request(TARGET_PREFIX + "DescribeStateMachine", b"{}")
        self.assertEqual(status, 400, body)
        self.assertEqual(body["__type"].split("#")[-1], "ValidationException", body)


@unittest.skipUnless(AUTH, "STEPLINE_AUTH=1 not set: the server runs open")
class SigV4Tests(Base):
    def test_signed_request_passes(self):
        arn = self.create_sm()
        self.assertEqual(SFN.describe_state_machine(stateMachineArn=arn)["stateMachineArn"], arn)
        status, body = raw_request(TARGET_PREFIX + "DescribeStateMachine", json.dumps({"stateMachineArn": arn}).encode())
        self.assertEqual(status, 200, body)
        self.assertEqual(body["stateMachineArn"], arn)

    def test_unknown_access_key(self):
        bad = make_client(key_id="AKIDUNKNOWN" + RUN.upper(), secret=SECRET)
        self.assertClientError("UnrecognizedClientException", bad.list_state_machines)

    def test_wrong_secret(self):
        bad = make_client(key_id=KEY_ID, secret=SECRET + "-wrong")
        self.assertClientError("InvalidSignatureException", bad.list_state_machines)

    def test_tampered_body(self):
        arn = self.create_sm()
        body = json.dumps({"stateMachineArn": arn, "input": '{"amount": 1}'}).encode()
        status, resp = raw_request(
            TARGET_PREFIX + "StartExecution",
            body,
            tamper=lambda b: b.replace(b'\\"amount\\": 1', b'\\"amount\\": 9'),
        )
        self.assertEqual(status, 400, resp)
        self.assertEqual(resp["__type"].split("#")[-1], "InvalidSignatureException", resp)
        self.assertEqual(SFN.list_executions(stateMachineArn=arn)["executions"], [])

    def test_unsigned_request(self):
        status, body = raw_request(TARGET_PREFIX + "ListStateMachines", b"{}", sign=False)
        self.assertIn(status, (400, 403), body)
        self.assertEqual(body["__type"].split("#")[-1], "MissingAuthenticationToken", body)


@unittest.skipIf(AUTH, "the server requires SigV4")
class OpenServerTests(Base):
    def test_unsigned_request_accepted(self):
        status, body = raw_request(TARGET_PREFIX + "ListActivities", b"{}", sign=False)
        self.assertEqual(status, 200, body)
        self.assertIsInstance(body["activities"], list)


# ---------------------------------------------------------------------------------------------
# Activities
# ---------------------------------------------------------------------------------------------


class ActivityTests(Base):
    def test_create_activity_idempotent(self):
        name = unique("act")
        first = SFN.create_activity(name=name)
        arn = first["activityArn"]
        self.addCleanup(self._quiet, SFN.delete_activity, activityArn=arn)
        self.assertTrue(arn.endswith(f":activity:{name}"), arn)
        self.assertIn("creationDate", first)
        second = SFN.create_activity(name=name)
        self.assertEqual(second["activityArn"], arn)
        self.assertEqual(second["creationDate"], first["creationDate"])

    def test_create_activity_invalid_name(self):
        self.assertClientError("InvalidName", SFN.create_activity, name="bad name")

    def test_describe_activity(self):
        name = unique("dact")
        arn = self.create_activity(name=name)
        d = SFN.describe_activity(activityArn=arn)
        self.assertEqual(d["activityArn"], arn)
        self.assertEqual(d["name"], name)
        self.assertIn("creationDate", d)

    def test_list_activities_pagination(self):
        mine = {self.create_activity() for _ in range(3)}
        seen, token, pages = [], None, 0
        while True:
            args = {"maxResults": 1}
            if token:
                args["nextToken"] = token
            page = SFN.list_activities(**args)
            pages += 1
            self.assertLessEqual(len(page["activities"]), 1)
            for a in page["activities"]:
                self.assertIn("name", a)
                self.assertIn("creationDate", a)
            seen += [a["activityArn"] for a in page["activities"]]
            token = page.get("nextToken")
            if not token:
                break
            self.assertLess(pages, 5000)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertTrue(mine <= set(seen), mine - set(seen))
        self.assertClientError("InvalidToken", SFN.list_activities, nextToken="garbage!!")

    def test_delete_activity(self):
        arn = SFN.create_activity(name=unique("del"))["activityArn"]
        SFN.delete_activity(activityArn=arn)
        self.assertClientError("ActivityDoesNotExist", SFN.describe_activity, activityArn=arn)
        listed = [a["activityArn"] for a in SFN.list_activities(maxResults=1000)["activities"]]
        self.assertNotIn(arn, listed)

    def test_activity_does_not_exist(self):
        arn = self.create_activity()
        missing = self.missing_arn(arn, "activity")
        self.assertClientError("ActivityDoesNotExist", SFN.describe_activity, activityArn=missing)
        self.assertClientError("ActivityDoesNotExist", SFN.get_activity_task, activityArn=missing)

    def test_activity_worker_retry_and_catch(self):
        act = pooled_activity()
        sm = self.create_sm(
            definition=json.dumps(
                {
                    "StartAt": "Work",
                    "States": {
                        "Work": {
                            "Type": "Task",
                            "Resource": act,
                            "HeartbeatSeconds": 10,
                            "TimeoutSeconds": 30,
                            "ResultPath": "$.result",
                            "Retry": [
                                {"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1.0}
                            ],
                            "Catch": [{"ErrorEquals": ["Fatal"], "ResultPath": "$.caught", "Next": "Fallback"}],
                            "Next": "Done",
                        },
                        "Fallback": {"Type": "Pass", "Result": "fallback", "ResultPath": "$.path", "End": True},
                        "Done": {"Type": "Pass", "End": True},
                    },
                }
            )
        )
        attempts = {}

        def handler(task_input):
            key = task_input["id"]
            attempts[key] = attempts.get(key, 0) + 1
            if task_input["mode"] == "fatal":
                return ("failure", "Fatal", "boom")
            if attempts[key] == 1:
                return ("failure", "Flaky", "try again")
            return ("success", {"doubled": task_input["n"] * 2, "attempt": attempts[key]})

        worker_name = unique("worker")
        worker = ActivityWorker(act, worker_name, handler, max_tasks=3)
        worker.start()
        flaky = SFN.start_execution(
            stateMachineArn=sm, input=json.dumps({"id": "f", "mode": "flaky", "n": 21})
        )["executionArn"]
        fatal = SFN.start_execution(
            stateMachineArn=sm, input=json.dumps({"id": "x", "mode": "fatal", "n": 1})
        )["executionArn"]
        d_flaky = wait_status(flaky, timeout=20)
        d_fatal = wait_status(fatal, timeout=20)
        worker.join(5)
        self.assertEqual(worker.errors, [])

        self.assertEqual(d_flaky["status"], "SUCCEEDED", d_flaky)
        self.assertEqual(
            json.loads(d_flaky["output"]),
            {"id": "f", "mode": "flaky", "n": 21, "result": {"doubled": 42, "attempt": 2}},
        )
        self.assertEqual(d_fatal["status"], "SUCCEEDED", d_fatal)
        self.assertEqual(
            json.loads(d_fatal["output"]),
            {
                "id": "x",
                "mode": "fatal",
                "n": 1,
                "caught": {"Error": "Fatal", "Cause": "boom"},
                "path": "fallback",
            },
        )
        self.assertEqual(attempts, {"f": 2, "x": 1})

        # /metrics counts what was committed: two executions, three tries (one a retry).
        with urllib.request.urlopen(ENDPOINT + "/metrics", timeout=10) as resp:
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Content-Type"].startswith("text/plain"))
            samples = resp.read().decode().splitlines()
        name = sm.split(":")[-1]
        for line in [
            f'stepline_executions_started_total{{state_machine="{name}"}} 2',
            f'stepline_executions_finished_total{{state_machine="{name}",status="SUCCEEDED"}} 2',
            f'stepline_tasks_scheduled_total{{resource="{act}"}} 3',
            f'stepline_task_retries_total{{resource="{act}"}} 1',
            f'stepline_tasks_ended_total{{resource="{act}",outcome="failed"}} 2',
            f'stepline_tasks_ended_total{{resource="{act}",outcome="succeeded"}} 1',
        ]:
            self.assertIn(line, samples)
        self.assertIn("stepline_partitions 4", samples)

        events = full_history(flaky)
        activity = [e for e in events if e["type"].startswith("Activity")]
        self.assertEqual(
            [e["type"] for e in activity],
            [
                "ActivityScheduled",
                "ActivityStarted",
                "ActivityFailed",
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
            ],
        )
        self.assertEqual(activity[0]["activityScheduledEventDetails"]["resource"], act)
        self.assertEqual(activity[0]["activityScheduledEventDetails"]["heartbeatInSeconds"], 10)
        for e in activity:
            if e["type"] == "ActivityStarted":
                self.assertEqual(e["activityStartedEventDetails"]["workerName"], worker_name)
        self.assertEqual(activity[2]["activityFailedEventDetails"]["error"], "Flaky")
        self.assertEqual(activity[2]["activityFailedEventDetails"]["cause"], "try again")
        self.assertEqual(
            json.loads(activity[5]["activitySucceededEventDetails"]["output"]),
            {"doubled": 42, "attempt": 2},
        )
        # The retry waited IntervalSeconds (1 s) between the failure and the new schedule.
        gap = (activity[3]["timestamp"] - activity[2]["timestamp"]).total_seconds()
        self.assertGreaterEqual(gap, 0.9)

        fatal_types = [e["type"] for e in full_history(fatal)]
        self.assertIn("ActivityFailed", fatal_types)
        self.assertNotIn("ActivitySucceeded", fatal_types)
        self.assertIn("PassStateEntered", fatal_types)

    def test_execution_right_after_create_activity(self):
        # A client creates an activity and at once starts an execution that uses it. (Running
        # some other execution first makes the server's view of activities as fresh as possible,
        # which is when a cache of it is most likely to miss the new one.)
        warm = self.create_sm()
        wait_status(SFN.start_execution(stateMachineArn=warm)["executionArn"])
        act = self.create_activity()
        sm = self.create_sm(definition=activity_definition(act, HeartbeatSeconds=10))
        exec_arn = SFN.start_execution(stateMachineArn=sm, input='{"fresh": 1}')["executionArn"]
        self.stop_later(exec_arn)
        task = poll_task(act, timeout=5)
        d = SFN.describe_execution(executionArn=exec_arn)
        self.assertEqual(d["status"], "RUNNING", d)
        self.assertIsNotNone(task, "GetActivityTask got nothing")
        self.assertEqual(json.loads(task["input"]), {"fresh": 1})

    def test_heartbeat_timeout(self):
        act = pooled_activity()
        sm = self.create_sm(definition=activity_definition(act, HeartbeatSeconds=1, TimeoutSeconds=20))
        exec_arn = SFN.start_execution(stateMachineArn=sm, input='{"k": 1}')["executionArn"]
        task = poll_task(act, timeout=10, worker_name=unique("sleepy"))
        self.assertIsNotNone(task, "GetActivityTask returned nothing")
        token = task["taskToken"]
        self.assertEqual(json.loads(task["input"]), {"k": 1})
        # Never heartbeat: the execution fails with States.Timeout.
        d = wait_status(exec_arn, timeout=10)
        self.assertEqual(d["status"], "FAILED", d)
        # AWS names a heartbeat timeout States.HeartbeatTimeout (a States.Timeout catcher
        # matches it too); older descriptions say States.Timeout.
        self.assertIn(d["error"], ("States.Timeout", "States.HeartbeatTimeout"))
        types = [e["type"] for e in full_history(exec_arn)]
        self.assertIn("ActivityTimedOut", types)
        self.assertEqual(types[-1], "ExecutionFailed")
        self.assertClientError("TaskTimedOut", SFN.send_task_heartbeat, taskToken=token)
        self.assertClientError("TaskTimedOut", SFN.send_task_success, taskToken=token, output="{}")
        self.assertClientError("TaskTimedOut", SFN.send_task_failure, taskToken=token, error="Late")

    def test_heartbeat_timeout_caught(self):
        act = pooled_activity()
        sm = self.create_sm(
            definition=json.dumps(
                {
                    "StartAt": "Work",
                    "States": {
                        "Work": {
                            "Type": "Task",
                            "Resource": act,
                            "HeartbeatSeconds": 1,
                            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.err", "Next": "Late"}],
                            "End": True,
                        },
                        "Late": {"Type": "Pass", "End": True},
                    },
                }
            )
        )
        exec_arn = SFN.start_execution(stateMachineArn=sm, input="{}")["executionArn"]
        task = poll_task(act, timeout=10)
        self.assertIsNotNone(task)
        d = wait_status(exec_arn, timeout=10)
        self.assertEqual(d["status"], "SUCCEEDED", d)
        self.assertIn(json.loads(d["output"])["err"]["Error"], ("States.Timeout", "States.HeartbeatTimeout"))

    def test_forged_task_token(self):
        act = pooled_activity()
        sm = self.create_sm(definition=activity_definition(act, HeartbeatSeconds=10))
        exec_arn = SFN.start_execution(stateMachineArn=sm)["executionArn"]
        self.stop_later(exec_arn)
        task = poll_task(act, timeout=10)
        self.assertIsNotNone(task)
        token = task["taskToken"]
        i = 5
        forged = token[:i] + ("B" if token[i] != "B" else "C") + token[i + 1 :]
        self.assertClientError("InvalidToken", SFN.send_task_success, taskToken=forged, output="{}")
        self.assertClientError("InvalidToken", SFN.send_task_heartbeat, taskToken=forged)
        self.assertClientError("InvalidToken", SFN.send_task_failure, taskToken="garbage")
        # The real token still works.
        SFN.send_task_heartbeat(taskToken=token)
        SFN.send_task_success(taskToken=token, output='{"ok": true}')
        d = wait_status(exec_arn)
        self.assertEqual(d["status"], "SUCCEEDED")
        self.assertEqual(json.loads(d["output"]), {"ok": True})
        # Replaying a finished task's token.
        self.assertClientError("TaskTimedOut", SFN.send_task_success, taskToken=token, output="{}")

    def test_send_task_success_invalid_output(self):
        act = pooled_activity()
        sm = self.create_sm(definition=activity_definition(act, HeartbeatSeconds=10))
        exec_arn = SFN.start_execution(stateMachineArn=sm)["executionArn"]
        self.stop_later(exec_arn)
        task = poll_task(act, timeout=10)
        self.assertIsNotNone(task)
        self.assertClientError(
            "InvalidOutput", SFN.send_task_success, taskToken=task["taskToken"], output="{nope"
        )
        self.assertEqual(SFN.describe_execution(executionArn=exec_arn)["status"], "RUNNING")

    def test_get_activity_task_long_poll(self):
        act = pooled_activity()
        sm = self.create_sm(definition=activity_definition(act, TimeoutSeconds=30))
        worker_name = unique("poller")
        box = {}

        def poll():
            t0 = time.time()
            box["resp"] = make_client().get_activity_task(activityArn=act, workerName=worker_name)
            box["at"] = time.time()
            box["waited"] = box["at"] - t0

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        time.sleep(1.0)
        self.assertTrue(t.is_alive(), "GetActivityTask returned although nothing was queued")
        started = time.time()
        exec_arn = SFN.start_execution(stateMachineArn=sm, input='{"poll": true}')["executionArn"]
        self.stop_later(exec_arn)
        t.join(10)
        self.assertFalse(t.is_alive(), "the long poll did not return the task within 10 s")
        resp = box["resp"]
        self.assertIn("taskToken", resp)
        self.assertEqual(json.loads(resp["input"]), {"poll": True})
        self.assertGreaterEqual(box["waited"], 0.9)
        self.assertLess(box["at"] - started, 5)
        SFN.send_task_success(taskToken=resp["taskToken"], output='{"polled": 1}')
        d = wait_status(exec_arn)
        self.assertEqual(json.loads(d["output"]), {"polled": 1})
        started_events = [e for e in full_history(exec_arn) if e["type"] == "ActivityStarted"]
        self.assertEqual(started_events[0]["activityStartedEventDetails"]["workerName"], worker_name)


# ---------------------------------------------------------------------------------------------
# RedriveExecution and TestState
# ---------------------------------------------------------------------------------------------


class RedriveTests(Base):
    def test_redrive_execution(self):
        act = pooled_activity()
        sm = self.create_sm(
            definition=json.dumps(
                {
                    "StartAt": "Prepare",
                    "States": {
                        "Prepare": {"Type": "Pass", "Result": "prepared", "ResultPath": "$.prep", "Next": "Work"},
                        "Work": {"Type": "Task", "Resource": act, "HeartbeatSeconds": 10, "ResultPath": "$.work", "End": True},
                    },
                }
            )
        )
        exec_arn = SFN.start_execution(stateMachineArn=sm, input='{"v": 7}')["executionArn"]
        self.stop_later(exec_arn)
        task = poll_task(act, timeout=10)
        self.assertIsNotNone(task)
        SFN.send_task_failure(taskToken=task["taskToken"], error="Boom", cause="first attempt")
        d = wait_status(exec_arn)
        self.assertEqual(d["status"], "FAILED")
        self.assertEqual(d["error"], "Boom")
        self.assertEqual(d.get("redriveCount", 0), 0)
        self.assertEqual(d.get("redriveStatus"), "REDRIVABLE")

        resp = SFN.redrive_execution(executionArn=exec_arn)
        self.assertIn("redriveDate", resp)
        task = poll_task(act, timeout=10)
        self.assertIsNotNone(task, "no task after the redrive")
        self.assertEqual(json.loads(task["input"]), {"v": 7, "prep": "prepared"})
        SFN.send_task_success(taskToken=task["taskToken"], output='{"second": true}')
        d = wait_status(exec_arn)
        self.assertEqual(d["status"], "SUCCEEDED", d)
        self.assertEqual(d["redriveCount"], 1)
        self.assertIn("redriveDate", d)
        self.assertEqual(json.loads(d["output"]), {"v": 7, "prep": "prepared", "work": {"second": True}})
        self.assertEqual(d.get("redriveStatus"), "NOT_REDRIVABLE")
        types = [e["type"] for e in full_history(exec_arn)]
        self.assertIn("ExecutionRedriven", types)
        # Prepare (which succeeded) is not re-run.
        self.assertEqual(types.count("PassStateEntered"), 1)
        self.assertEqual(types[-1], "ExecutionSucceeded")
        listed = SFN.list_executions(stateMachineArn=sm, redriveFilter="REDRIVEN")["executions"]
        self.assertEqual([e["executionArn"] for e in listed], [exec_arn])

        self.assertClientError("ExecutionNotRedrivable", SFN.redrive_execution, executionArn=exec_arn)

    def test_redrive_succeeded_execution(self):
        sm = self.create_sm()
        exec_arn = SFN.start_execution(stateMachineArn=sm)["executionArn"]
        self.assertEqual(wait_status(exec_arn)["status"], "SUCCEEDED")
        self.assertClientError("ExecutionNotRedrivable", SFN.redrive_execution, executionArn=exec_arn)

    def test_redrive_missing_execution(self):
        sm = self.create_sm()
        missing = sm.replace(":stateMachine:", ":execution:") + ":" + unique("nope")
        self.assertClientError("ExecutionDoesNotExist", SFN.redrive_execution, executionArn=missing)


class TestStateTests(Base):
    def test_pass_state_debug(self):
        resp = SFN.test_state(
            definition=json.dumps(
                {
                    "Type": "Pass",
                    "Parameters": {"x.$": "$.a", "const": 1},
                    "ResultPath": "$.out",
                    "Next": "After",
                }
            ),
            roleArn=ROLE,
            input=json.dumps({"a": 5}),
            inspectionLevel="DEBUG",
        )
        self.assertEqual(resp["status"], "SUCCEEDED", resp)
        self.assertEqual(json.loads(resp["output"]), {"a": 5, "out": {"x": 5, "const": 1}})
        self.assertEqual(resp["nextState"], "After")
        data = resp["inspectionData"]
        self.assertEqual(json.loads(data["input"]), {"a": 5})
        self.assertEqual(json.loads(data["afterInputPath"]), {"a": 5})
        self.assertEqual(json.loads(data["afterParameters"]), {"x": 5, "const": 1})
        self.assertEqual(json.loads(data["afterResultPath"]), {"a": 5, "out": {"x": 5, "const": 1}})

    def test_pass_state_info_level(self):
        resp = SFN.test_state(
            definition=json.dumps({"Type": "Pass", "Result": {"r": 1}, "End": True}),
            roleArn=ROLE,
            input="{}",
        )
        self.assertEqual(resp["status"], "SUCCEEDED")
        self.assertEqual(json.loads(resp["output"]), {"r": 1})
        # An End state has no next state; INFO (the default level) has no data-flow details.
        self.assertNotIn("nextState", resp)
        self.assertNotIn("afterParameters", resp.get("inspectionData", {}))

    def test_choice_state(self):
        definition = json.dumps(
            {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
                "Default": "Small",
            }
        )
        big = SFN.test_state(definition=definition, roleArn=ROLE, input='{"n": 42}')
        self.assertEqual(big["status"], "SUCCEEDED", big)
        self.assertEqual(big["nextState"], "Big")
        self.assertEqual(json.loads(big["output"]), {"n": 42})
        small = SFN.test_state(definition=definition, roleArn=ROLE, input='{"n": 1}')
        self.assertEqual(small["nextState"], "Small")

    def test_fail_state(self):
        resp = SFN.test_state(
            definition=json.dumps({"Type": "Fail", "Error": "MyError", "Cause": "my cause"}),
            roleArn=ROLE,
            input="{}",
        )
        self.assertEqual(resp["status"], "FAILED", resp)
        self.assertEqual(resp["error"], "MyError")
        self.assertEqual(resp["cause"], "my cause")
        self.assertNotIn("output", resp)

    def test_invalid_state_definition(self):
        self.assertClientError(
            "InvalidDefinition",
            SFN.test_state,
            definition=json.dumps({"Type": "Nope"}),
            roleArn=ROLE,
            input="{}",
        )


# ---------------------------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------------------------


def tag_dict(resp):
    return {t["key"]: t["value"] for t in resp["tags"]}


class TagTests(Base):
    def test_state_machine_tags(self):
        arn = self.create_sm(tags=[{"key": "team", "value": "core"}, {"key": "cost", "value": "1"}])
        self.assertEqual(tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"team": "core", "cost": "1"})
        SFN.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}, {"key": "cost", "value": "2"}])
        self.assertEqual(
            tag_dict(SFN.list_tags_for_resource(resourceArn=arn)),
            {"team": "core", "cost": "2", "env": "dev"},
        )
        SFN.untag_resource(resourceArn=arn, tagKeys=["team", "cost", "absent"])
        self.assertEqual(tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"env": "dev"})

    def test_activity_tags(self):
        name = unique("tagact")
        arn = SFN.create_activity(name=name, tags=[{"key": "owner", "value": "suite"}])["activityArn"]
        self.addCleanup(self._quiet, SFN.delete_activity, activityArn=arn)
        self.assertEqual(tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"owner": "suite"})
        SFN.tag_resource(resourceArn=arn, tags=[{"key": "tier", "value": "gold"}])
        self.assertEqual(
            tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"owner": "suite", "tier": "gold"}
        )
        SFN.untag_resource(resourceArn=arn, tagKeys=["owner"])
        self.assertEqual(tag_dict(SFN.list_tags_for_resource(resourceArn=arn)), {"tier": "gold"})

    def test_tags_resource_not_found(self):
        arn = self.create_sm()
        missing = self.missing_arn(arn, "stateMachine")
        self.assertClientError("ResourceNotFound", SFN.list_tags_for_resource, resourceArn=missing)
        self.assertClientError(
            "ResourceNotFound", SFN.tag_resource, resourceArn=missing, tags=[{"key": "a", "value": "b"}]
        )

    def test_too_many_tags(self):
        arn = self.create_sm()
        tags = [{"key": f"k{i}", "value": "v"} for i in range(51)]
        self.assertClientError("TooManyTags", SFN.tag_resource, resourceArn=arn, tags=tags)


# ---------------------------------------------------------------------------------------------
# AWS CLI
# ---------------------------------------------------------------------------------------------


class AwsCliTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Fail loudly, never skip: CI installs the AWS CLI (.ci/services).
        if shutil.which("aws") is None:
            raise RuntimeError("the aws CLI is not installed: pip install awscli")

    @staticmethod
    def env():
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") or k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }
        env.update(
            AWS_ACCESS_KEY_ID=KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_CONFIG_FILE="/nonexistent/aws-config",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
            AWS_DISABLE_HOST_PREFIX_INJECTION="true",
            AWS_MAX_ATTEMPTS="1",
            AWS_PAGER="",
        )
        return env

    def aws(self, *args, check=True):
        cmd = ["aws", "stepfunctions", *args, "--endpoint-url", ENDPOINT, "--output", "json"]
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(proc.returncode, 0, f"{cmd}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
            return json.loads(proc.stdout) if proc.stdout.strip() else {}
        return proc

    def test_cli_lifecycle(self):
        name = unique("cli")
        definition = json.dumps(
            {
                "StartAt": "Hello",
                "States": {"Hello": {"Type": "Pass", "Parameters": {"msg.$": "$.who"}, "End": True}},
            }
        )
        created = self.aws(
            "create-state-machine", "--name", name, "--definition", definition, "--role-arn", ROLE
        )
        sm = created["stateMachineArn"]
        self.assertTrue(sm.endswith(f":stateMachine:{name}"))
        try:
            started = self.aws(
                "start-execution", "--state-machine-arn", sm, "--name", "first", "--input", '{"who": "cli"}'
            )
            exec_arn = started["executionArn"]
            self.assertTrue(exec_arn.endswith(f"{name}:first"), exec_arn)
            deadline = time.time() + 20
            while True:
                d = self.aws("describe-execution", "--execution-arn", exec_arn)
                if d["status"] != "RUNNING":
                    break
                self.assertLess(time.time(), deadline)
                time.sleep(0.2)
            self.assertEqual(d["status"], "SUCCEEDED")
            self.assertEqual(json.loads(d["output"]), {"msg": "cli"})

            history = self.aws("get-execution-history", "--execution-arn", exec_arn)
            types = [e["type"] for e in history["events"]]
            self.assertEqual(types[0], "ExecutionStarted")
            self.assertEqual(types[-1], "ExecutionSucceeded")
            self.assertIn("PassStateEntered", types)

            listed = self.aws("list-executions", "--state-machine-arn", sm)
            self.assertEqual([e["executionArn"] for e in listed["executions"]], [exec_arn])
            self.assertEqual(listed["executions"][0]["status"], "SUCCEEDED")

            missing = sm.replace(":stateMachine:", ":execution:") + ":nope-" + RUN
            proc = self.aws("describe-execution", "--execution-arn", missing, check=False)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("ExecutionDoesNotExist", proc.stderr)
        finally:
            self.aws("delete-state-machine", "--state-machine-arn", sm)
        proc = self.aws("describe-state-machine", "--state-machine-arn", sm, check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("StateMachineDoesNotExist", proc.stderr)

    def test_cli_list_state_machines_paginates(self):
        # The CLI follows nextToken itself (--page-size sets maxResults).
        names = [unique("clipage") for _ in range(2)]
        arns = []
        try:
            for n in names:
                arns.append(
                    self.aws(
                        "create-state-machine", "--name", n, "--definition", pass_definition(), "--role-arn", ROLE
                    )["stateMachineArn"]
                )
            listed = self.aws("list-state-machines", "--page-size", "1")
            all_arns = [sm["stateMachineArn"] for sm in listed["stateMachines"]]
            self.assertEqual(len(all_arns), len(set(all_arns)))
            for a in arns:
                self.assertIn(a, all_arns)
        finally:
            for a in arns:
                self.aws("delete-state-machine", "--state-machine-arn", a, check=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
