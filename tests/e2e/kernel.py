"""A Jupyter kernel driven through the running server's REST and websocket API, as JupyterLab
drives it: start it, run code in it, read what it printed. For tests that need a kernel to keep
its state while something happens around it (a package added, installed from the lab)."""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


class KernelError(AssertionError):
    pass


class Kernel:
    def __init__(self, port: int, token: str, timeout: float = 120) -> None:
        self.base, self.token, self.timeout = f"127.0.0.1:{port}", token, timeout
        headers = {"Authorization": f"token {token}"}
        response = requests.post(
            f"http://{self.base}/api/kernels", json={"name": "python3"}, headers=headers, timeout=30
        )
        response.raise_for_status()
        self.id = response.json()["id"]
        self.ws = websocket.create_connection(
            f"ws://{self.base}/api/kernels/{self.id}/channels?token={token}", timeout=timeout
        )
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float | None = None) -> str:
        """Execute code; returns its stdout (and results) as text; KernelError if it raised."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                  "username": "test", "version": "5.3", "date": ""}  # fmt: skip
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        message = {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": "shell",
        }
        self.ws.send(json.dumps(message))
        out, error = [], None
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = reply["msg_type"], reply["content"]
            if kind == "stream":
                out.append(body["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(body["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                error = f"{body['ename']}: {body['evalue']}"
            elif kind == "status" and body["execution_state"] == "idle":
                if error:
                    raise KernelError(f"{error}\n{''.join(out)}")
                return "".join(out)
        raise KernelError(f"no answer within {timeout or self.timeout}s to {code!r}; so far: {''.join(out)}")

    def close(self) -> None:
        self.ws.close()
        requests.delete(
            f"http://{self.base}/api/kernels/{self.id}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )
