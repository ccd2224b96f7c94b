"""Webhook registrations (admin scope), one URL per event type and owner."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import AdminPrincipal, ServicesDep
from gateway.api.schemas import StatusMessage, WebhookCreate, WebhookCreated, WebhookList, error_responses
from gateway.service.webhooks import EventType

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=error_responses(401, 403))


@router.get("", response_model=WebhookList)
async def list_webhooks(services: ServicesDep, principal: AdminPrincipal) -> WebhookList:
    return WebhookList(
        enabled=services.webhooks.enabled, webhooks=await services.webhooks.list(principal.name)
    )


@router.post("", response_model=WebhookCreated, responses=error_responses(422))
async def register_webhook(
    body: WebhookCreate, services: ServicesDep, principal: AdminPrincipal
) -> dict[str, Any]:
    """Register (or replace) the hook for an event; the returned secret signs every delivery."""
    created = await services.webhooks.register(principal.name, body.event_type, str(body.url))
    return {"status": "success", **created}


@router.delete("/{event_type}", response_model=StatusMessage, responses=error_responses(404, 422))
async def delete_webhook(
    event_type: EventType, services: ServicesDep, principal: AdminPrincipal
) -> StatusMessage:
    await services.webhooks.delete(principal.name, event_type)
    return StatusMessage(status="success", message=f"Webhook for {event_type} removed.")
