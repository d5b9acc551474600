"""A minimal synchronous driver of a host adapter over real HTTP, for tests of the adapters
against the fake host's dialects (the shared async client does this in the product)."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
from PIL import Image

from flux_depth_assets.providers.hosts.base import Created, HostAdapter, HostPoll, HostRequest


def data_uri(size: tuple[int, int] = (80, 60), shade: int = 0) -> str:
    im = Image.new("RGB", size, (40 + shade, 90, 160))
    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def inputs(shade: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "control_image": data_uri(shade=shade),
        "prompt": "",
        "steps": 50,
        "guidance": 15,
        "safety_tolerance": 2,
        "output_format": "png",
        "prompt_upsampling": False,
        **extra,
    }


class Driver:
    def __init__(self, adapter: HostAdapter, base_url: str, key: str = "test-key"):
        self.adapter, self.base_url, self.key = adapter, base_url, key
        self.http = httpx.Client(timeout=10)

    def send(self, request: HostRequest) -> httpx.Response:
        headers = dict(request.headers)
        if self.adapter.key_allowed(request.url, self.base_url):
            headers.update(self.adapter.auth_headers(self.key))
        return self.http.request(request.method, request.url, json=request.json, headers=headers)

    def create(
        self, shade: int = 0, model: str | None = None, deadline_s: float | None = None
    ) -> httpx.Response:
        a = self.adapter
        return self.send(
            a.create_request(
                self.base_url,
                model or a.default_model,
                a.default_version,
                inputs(shade),
                deadline_s,
            )
        )

    def created(self, shade: int = 0) -> Created:
        response = self.create(shade)
        assert response.status_code < 300, response.text
        created = self.adapter.parse_create(response.json())
        assert created is not None
        return created

    def poll(self, created: Created) -> HostPoll:
        response = self.send(self.adapter.poll_request(self.base_url, created))
        assert response.status_code == 200, response.text
        return self.adapter.parse_poll(response.json())

    def wait(self, created: Created, timeout_s: float = 10.0) -> HostPoll:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            poll = self.poll(created)
            if poll.coarse != "running":
                return poll
            time.sleep(0.02)
        raise AssertionError("prediction did not finish")

    def download(self, url: str) -> httpx.Response:
        return self.http.get(url)  # output URLs never get the key

    def close(self) -> None:
        self.http.close()
