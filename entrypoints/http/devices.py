"""``/devices``: the push targets of the caller's logins (``docs/protocol.md``, push notifications)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.common import Principal
from application.push import DeleteDevice, ListDevices, RegisterDevice
from domain.errors import ConflictError, NotFoundError
from domain.push import TARGETS_PER_LOGIN_MAX, NewTarget
from entrypoints.http.refusals import BAD_TOKEN, JSON_BODY, STORE_DOWN, answers, http_refusal, invalid, refusal
from entrypoints.http.schemas import DeviceIn, DeviceOut, DevicePage

DEVICE_ID_MAX = 64
DeviceId = Annotated[
    str, Parameter(max_length=DEVICE_ID_MAX, description="a device's `id` from GET /devices (at most 64 characters)")
]
BAD_DEVICE_ID = http_refusal(400, f"the id is longer than {DEVICE_ID_MAX} characters", field="device_id")


class DevicesController(Controller):
    path = "/devices"
    tags = ["devices"]
    security = [{"bearer": []}]

    @post(
        "/",
        operation_id="registerDevice",
        response_description="Registered (or, for a known token, moved to this login)",
        status_code=HTTP_201_CREATED,
        summary="Register a push target for this login",
        description="The server's push gateway (`CHAT_PUSH_GATEWAY_URL`, docs/push-gateway.md) is sent a "
        "notification for each message to you that no device of yours acknowledged in time, listing your "
        "targets. The target belongs to this login: logging it out (or any revocation of it) removes the "
        f"target. At most {TARGETS_PER_LOGIN_MAX} per login.",
        responses=answers(
            JSON_BODY,
            invalid("token", "not 1–2048 printable ASCII characters without spaces"),
            invalid("appId", "not 1–200 of A-Z a-z 0-9 . _ : -"),
            invalid("label", "not 1–100 characters after trimming, or with control or text-direction characters"),
            BAD_TOKEN,
            refusal(ConflictError, f"this login already has {TARGETS_PER_LOGIN_MAX} push targets"),
            STORE_DOWN,
        ),
    )
    async def register(
        self,
        data: JSONBody[DeviceIn],
        principal: NamedDependency[Principal],
        register_device: NamedDependency[RegisterDevice],
    ) -> DeviceOut:
        target = await register_device(
            principal, NewTarget(kind=data.kind, token=data.token, app_id=data.app_id, label=data.label)
        )
        return DeviceOut.of(target, principal.sid)

    @get(
        "/",
        operation_id="listDevices",
        response_description="Your push targets",
        summary="The push targets of all your logins",
        responses=answers(BAD_TOKEN, STORE_DOWN),
    )
    async def list_devices(
        self, principal: NamedDependency[Principal], list_devices: NamedDependency[ListDevices]
    ) -> DevicePage:
        return DevicePage(items=[DeviceOut.of(t, principal.sid) for t in await list_devices(principal)])

    @delete(
        "/{device_id:str}",
        operation_id="deleteDevice",
        response_description="Deleted",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete one of your push targets",
        responses=answers(
            BAD_DEVICE_ID, BAD_TOKEN, refusal(NotFoundError, "you have no device with this id"), STORE_DOWN
        ),
    )
    async def delete_device(
        self,
        device_id: FromPath[DeviceId],
        principal: NamedDependency[Principal],
        delete_device: NamedDependency[DeleteDevice],
    ) -> None:
        await delete_device(principal, device_id)
