"""A support-ticket agent instrumented with unitcost, as you would write it in your own code.

Run it offline (it starts unitcost's local fake OpenAI server, so no API key is needed)::

    python examples/support_agent.py
    unitcost report --db support-agent.db

Point it at a real OpenAI-compatible endpoint instead with OPENAI_BASE_URL and OPENAI_API_KEY.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass

from openai import OpenAI

import unitcost
from unitcost.demo.server import FakeOpenAIServer

DB = os.environ.get("UNITCOST_DB", "support-agent.db")
unitcost.configure(service_name="support-bot", db=DB)
unitcost.instrument()  # patches openai now, or when it is imported


@dataclass
class Ticket:
    id: str
    customer: str
    text: str


SYSTEM = "You are a support assistant. Answer from the knowledge base only."


@unitcost.tool("search_kb", cost=0.002)  # a fixed cost per call, in USD
def search_kb(query: str) -> list[str]:
    return ["kb/reset-password", "kb/billing-faq"]


def make_handler(client: OpenAI):
    @unitcost.task(
        "support_ticket", key=lambda ticket: ticket.id, attributes=lambda ticket: {"customer": ticket.customer}
    )
    def handle(ticket: Ticket) -> str:
        plan = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": SYSTEM + "\nstep: classify"},
                {"role": "user", "content": ticket.text},
            ],
        )
        category = (plan.choices[0].message.content or "").removeprefix("category: ")
        search_kb(ticket.text)
        if category in ("outage", "legal"):
            unitcost.outcome("escalated")
            return "escalated"
        with unitcost.step("draft"):
            reply = client.chat.completions.create(
                model="o4-mini",
                messages=[
                    {"role": "system", "content": SYSTEM + "\nstep: draft"},
                    {"role": "user", "content": ticket.text},
                ],
            )
        unitcost.outcome("resolved", value=12.0)  # resolving without a human saves about $12
        return reply.choices[0].message.content or ""

    return handle


def main() -> None:
    tickets = [
        Ticket("T-2001", "acme", "How do I reset my password?"),
        Ticket("T-2002", "globex", "Please refund the duplicate charge."),
        Ticket("T-2003", "acme", "There is an outage in eu-west."),
    ]
    with contextlib.ExitStack() as stack:
        base_url = os.environ.get("OPENAI_BASE_URL")
        if base_url is None:
            base_url = stack.enter_context(FakeOpenAIServer()).base_url
        client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "offline-demo"))
        handle = make_handler(client)
        for ticket in tickets:
            print(ticket.id, "->", handle(ticket))
    # A late outcome, as a ticketing system would report it hours later:
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-2003", value=12.0)
    unitcost.flush()
    print(f"Now run: unitcost report --db {shlex.quote(DB)}")


if __name__ == "__main__":
    main()
