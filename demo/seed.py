"""Sends the Daugavpils scenario through the public HTTP API, phase by phase.

Safe to run again, after a crash or on a system already seeded: every creating POST carries an
Idempotency-Key derived from the scenario (a retry gets the first answer back), and every other
step first reads the state it would change and is skipped when it is done already. So a second
run creates nothing and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from demo.api import Actor, Api, ApiError, SeedError
from demo.progress import Progress
from demo.scenario import (
    NEXT_SEMESTER,
    SEMESTER,
    SUPPLIERS,
    Approval,
    Consultation,
    Plan,
    Scenario,
    number,
)

NATIONAL = Actor("demo-ikvd", "national_coordinator")
AUDITOR = Actor("demo-auditor", "auditor")
IN_FORCE = ("approved", "in_progress")
LOG_HINT = "see var/log/ (make run) or the services' logs"


def teacher(school_id: str) -> Actor:
    return Actor(f"demo-teacher-{school_id}", "teacher", school=school_id)


def director(school_id: str) -> Actor:
    return Actor(f"demo-director-{school_id}", "director", school=school_id)


def coordinator(municipality: str) -> Actor:
    return Actor(
        f"demo-coordinator-{municipality}", "municipal_coordinator", municipality=municipality
    )


class Seeder:
    def __init__(self, api: Api, scenario: Scenario, progress: Progress) -> None:
        self.api, self.scenario, self.progress = api, scenario, progress
        self.municipality = {s["school_id"]: s["municipality"] for s in scenario.schools}
        self.versions: dict[str, int] = {}
        # Keys name the scenario (seed and size), so another scenario never reuses them.
        self.prefix = f"demo-{scenario.seed}-{len(scenario.pupils)}"

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def run(self) -> None:
        self.set_budgets()
        self.register_pupils()
        self.record_signs()
        self.wait_for_planning()
        self.draft_plans()
        self.approve_plans()
        self.provide_material_support()
        self.log_consultations()
        self.revise()
        self.depart()
        self.evaluate()
        self.continue_plan()
        self.transfer()

    # -- budgets and pupils ------------------------------------------------------------------
    def set_budgets(self) -> None:
        budgets = self.scenario.budgets
        with self.progress.phase("budgets", len(budgets)) as phase:
            for (school_id, semester), amount in budgets.items():
                path = f"/budgets/{school_id}/{semester}"
                who = coordinator(self.municipality[school_id])
                now = self.api.get("provisioning", path, who, accept=(200, 404))
                if "allocated" not in now or Decimal(now["allocated"]) != amount:
                    self.api.put("provisioning", path, who, {"amount_eur": f"{amount:.2f}"})
                phase.advance()

    def register_pupils(self) -> None:
        pupils = self.scenario.pupils
        with self.progress.phase("pupils", len(pupils)) as phase:
            for pupil in pupils:
                try:
                    answer = self.api.post(
                        "identification",
                        "/pupils",
                        teacher(pupil.school_id),
                        pupil.registration(),
                        key=self.key("pupil", pupil.key),
                    )
                except ApiError as error:
                    if error.code != "personal_code_registered":
                        raise
                    raise SeedError(
                        f"demo pupil {pupil.key} is registered already, but not by this "
                        "scenario (another --seed or --pupils?): seed an empty system"
                    ) from None
                pupil.pupil_id = answer["pupil_id"]
                self.versions[pupil.key] = answer["version"]
                phase.advance()

    def record_signs(self) -> None:
        at_risk = self.scenario.at_risk
        signs = sum(len(p.signs) for p in at_risk)
        with self.progress.phase("risk signs", signs) as phase:
            phase.note = f"({len(at_risk)} pupils at risk)"
            for pupil in at_risk:
                version = self.versions[pupil.key]
                for sign in pupil.signs:
                    body = {
                        "code": sign.code,
                        "observed_on": sign.observed_on.isoformat(),
                        "evidence": sign.evidence,
                        "expected_version": version,
                    }
                    answer = self.api.post(
                        "identification",
                        f"/pupils/{pupil.pupil_id}/risk-signs",
                        teacher(pupil.school_id),
                        body,
                        key=self.key("sign", pupil.key, sign.code),
                    )
                    version = answer["version"]
                    phase.advance()
                self.versions[pupil.key] = version

    def wait_for_planning(self) -> None:
        """Planning learns of pupils at risk from identification's events. It lists only
        pupils still at school: on a second seed the one who left is no longer among them."""
        expected = {p.pupil_id: {s.code for s in p.signs} for p in self.scenario.at_risk}
        if self.departure_row()["status"] == "departed":
            expected.pop(self.scenario.departure.pupil.pupil_id, None)
        move = self.scenario.transfer
        if self.enrolled_at_new_school():  # listed there, with the new school's sign only
            expected[move.pupil.pupil_id] = {move.sign.code}
        with self.progress.phase("planning knows pupils at risk", len(expected)) as phase:

            def known() -> bool:
                items = self.api.get("planning", "/pupils-at-risk", NATIONAL)["items"]
                codes = {item["pupil_id"]: set(item["risk_codes"]) for item in items}
                phase.set(sum(1 for p, c in expected.items() if c <= codes.get(p, set())))
                return phase.done == len(expected)

            self.api.wait_for(
                "planning to list every pupil at risk", known, f"is the broker up? {LOG_HINT}"
            )

    # -- plans -------------------------------------------------------------------------------
    def state(self, plan: Plan) -> dict[str, Any]:
        state: dict[str, Any] = self.api.get(
            "planning", f"/plans/{plan.plan_id}", teacher(plan.pupil.school_id)
        )
        self.versions[plan.key] = state["version"]
        return state

    def command(
        self,
        plan: Plan,
        action: str,
        who: Actor | None = None,
        body: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        method: str = "POST",
    ) -> dict[str, Any]:
        """A command on the plan's latest version. Provisioning's deliveries reach the plan
        as events and move its version: a stale version is read again and the command tried
        once more (a refused request is never kept under its Idempotency-Key)."""
        who = who or teacher(plan.pupil.school_id)
        for attempt in range(5):
            if plan.key not in self.versions:
                self.state(plan)
            payload = {**(body or {}), "expected_version": self.versions[plan.key]}
            path = f"/plans/{plan.plan_id}/{action}"
            try:
                answer: dict[str, Any] = self.api.request(
                    "planning", method, path, who, json=payload, key=key
                )
            except ApiError as error:
                if error.code != "stale_version" or attempt == 4:
                    raise
                self.state(plan)
                continue
            # A continuation answers with the new plan's version and this plan's.
            self.versions[plan.key] = answer.get("previous_version", answer["version"])
            return answer
        raise AssertionError("unreachable")

    def draft_plans(self) -> None:
        plans = self.scenario.plans_in(SEMESTER)
        with self.progress.phase("plans drafted", len(plans)) as phase:
            for plan in plans:
                self.draft(plan)
                phase.advance()

    def draft(self, plan: Plan) -> None:
        answer = self.api.post(
            "planning",
            "/plans",
            teacher(plan.pupil.school_id),
            plan.draft_body(),
            key=self.key("plan", plan.key),
        )
        plan.plan_id = answer["plan_id"]
        present = {(m["kind"], m["risk_code"]): m for m in self.state(plan)["measures"]}
        for measure in plan.measures:
            if (measure.kind, measure.risk_code) in present:
                measure.measure_id = present[(measure.kind, measure.risk_code)]["measure_id"]
                continue
            added = self.command(
                plan,
                "measures",
                body=measure.body(),
                key=self.key("measure", plan.key, measure.key),
            )
            measure.measure_id = added["measure_id"]

    def approver(self, plan: Plan, level: str) -> Actor:
        school_id = plan.pupil.school_id
        if level == "school":
            return director(school_id)
        if level == "municipality":
            return coordinator(self.municipality[school_id])
        return NATIONAL

    def approve_plans(self) -> None:
        plans = [p for p in self.scenario.plans_in(SEMESTER) if p.stops_at != "draft"]
        with self.progress.phase("plans through the approval chain", len(plans)) as phase:
            for plan in plans:
                state = self.state(plan)
                # A plan under revision is the revision's to submit, once it is changed.
                if state["status"] in ("draft", "in_approval"):
                    self.through_approval(plan, state)
                phase.advance()

    def through_approval(self, plan: Plan, state: dict[str, Any]) -> None:
        """Submit a draft, then approve level by level (director, municipal coordinator where
        the school has one, IKVD), as the plan itself names the pending level."""
        status, levels, pending = state["status"], state["approval_levels"], state["pending_level"]
        if status in ("draft", "under_revision"):
            status = self.command(plan, "submit")["status"]
            pending = levels[0]
        while status == "in_approval" and pending != plan.stops_at:
            who = self.approver(plan, pending)
            status = self.command(plan, "approve", who)["status"]
            plan.approvals.append(Approval(pending, who.sub))
            position = levels.index(pending) + 1
            pending = levels[position] if position < len(levels) else None

    # -- material support ----------------------------------------------------------------------
    def provide_material_support(self) -> None:
        plans = [p for p in self.scenario.plans_in(SEMESTER) if p.deliveries]
        deliveries = sum(len(p.deliveries) for p in plans)
        with self.progress.phase("deliveries", deliveries) as phase:
            for plan in plans:
                provisions = self.wait_for_provisions(plan)
                for measure in (m for m in plan.measures if m.material):
                    self.deliver(plan, provisions[str(measure.measure_id)], phase.advance)

    def wait_for_provisions(self, plan: Plan) -> dict[str, dict[str, Any]]:
        """Provisioning requests each material measure once planning's approval reaches it."""
        wanted = {str(m.measure_id) for m in plan.measures if m.material}
        who = director(plan.pupil.school_id)

        def requested() -> dict[str, dict[str, Any]] | None:
            query = {"plan_id": plan.plan_id}
            items = self.api.get("provisioning", "/provisions", who, params=query)["items"]
            found = {item["measure_id"]: item for item in items}
            return found if wanted <= set(found) else None

        found = self.api.wait_for(
            f"provisioning's requests for plan {plan.plan_id}", requested, LOG_HINT
        )
        rejected = [m for m in wanted if found[m]["status"] == "rejected"]
        if rejected:
            raise SeedError(f"provisioning rejected {len(rejected)} request(s): budget too small?")
        return found

    def deliver(self, plan: Plan, provision: dict[str, Any], advance: Callable[[], None]) -> None:
        path = f"/provisions/{provision['provision_id']}"
        who = director(plan.pupil.school_id)
        if provision["status"] == "requested":
            body = {
                "supplier": SUPPLIERS[provision["kind"]],
                "amount_eur": provision["planned_eur"],
                "expected_version": provision["version"],
            }
            provision = self.api.post("provisioning", f"{path}/order", who, body)
        else:
            provision = self.api.get("provisioning", path, who)
        done = {d["receipt_no"]: d["delivery_id"] for d in provision["deliveries"]}
        version = provision["version"]
        for delivery in (
            d for d in plan.deliveries if d.measure.measure_id == provision["measure_id"]
        ):
            if delivery.receipt_no not in done:
                body = {
                    "delivered_on": delivery.delivered_on.isoformat(),
                    "amount_eur": f"{delivery.amount_eur:.2f}",
                    "receipt_no": delivery.receipt_no,
                    "expected_version": version,
                }
                key = self.key("delivery", delivery.receipt_no)
                answer = self.api.post("provisioning", f"{path}/deliver", who, body, key=key)
                done[delivery.receipt_no], version = answer["delivery_id"], answer["version"]
            delivery.delivery_id = done[delivery.receipt_no]
            advance()

    # -- consultations ---------------------------------------------------------------------------
    def log_consultations(self) -> None:
        plans = [p for p in self.scenario.plans_in(SEMESTER) if p.consultations]
        count = sum(1 for p in plans for c in p.consultations if not c.after_revision)
        with self.progress.phase("consultations logged", count) as phase:
            for plan in plans:
                sessions = [c for c in plan.consultations if not c.after_revision]
                self.log(plan, sessions, phase.advance)

    def log(
        self, plan: Plan, sessions: Iterable[Consultation], advance: Callable[[], None]
    ) -> None:
        """Log each session not logged yet, and confirm those the pupil confirmed."""
        logged = self.state(plan)["consultations"]
        for session in sessions:
            match = next(
                (
                    c
                    for c in logged
                    if (c["measure_id"], c["date"], Decimal(str(c["hours"])))
                    == (session.measure.measure_id, session.day.isoformat(), session.hours)
                ),
                None,
            )
            if match is not None:
                logged.remove(match)
                session.consultation_id, confirmed = match["consultation_id"], match["confirmed"]
            else:
                body = {
                    "measure_id": session.measure.measure_id,
                    "date": session.day.isoformat(),
                    "hours": number(session.hours),
                    "provider": session.provider,
                    "topic": session.topic,
                    "remote": session.remote,
                }
                # Two sessions may match in every field: the key is the session's position.
                position = next(i for i, c in enumerate(plan.consultations) if c is session)
                key = self.key("consultation", plan.key, str(position))
                answer = self.command(plan, "consultations", body=body, key=key)
                session.consultation_id, confirmed = answer["consultation_id"], False
            if session.confirmed_on is not None and not confirmed:
                body = {"confirmed_on": session.confirmed_on.isoformat()}
                self.command(plan, f"consultations/{session.consultation_id}/confirm", body=body)
            advance()

    # -- the revision, the departure, the end of the semester -----------------------------------
    def revise(self) -> None:
        plan = self.scenario.revised
        revision = plan.revision
        assert revision is not None
        with self.progress.phase("revision approved again at every level", 1) as phase:
            while True:
                state = self.state(plan)
                measure = next(
                    m for m in state["measures"] if m["measure_id"] == revision.measure.measure_id
                )
                changed = Decimal(str(measure["hours"])) == revision.hours
                status = state["status"]
                if status in IN_FORCE and not changed:
                    self.command(plan, "revise", body={"reason": revision.reason})
                elif status == "under_revision" and not changed:
                    path = f"measures/{revision.measure.measure_id}"
                    self.command(
                        plan, path, body=revision.measure.body(hours=revision.hours), method="PUT"
                    )
                elif status in ("under_revision", "in_approval"):
                    self.through_approval(plan, state)
                else:
                    break
            after = [c for c in plan.consultations if c.after_revision]
            self.log(plan, after, lambda: None)
            phase.advance()

    def departure_row(self) -> dict[str, Any]:
        """How identification lists the scenario's pupil who leaves school."""
        pupil = self.scenario.departure.pupil
        query = {"school_id": pupil.school_id, "limit": 500}
        who = teacher(pupil.school_id)
        items = self.api.get("identification", "/pupils", who, params=query)["items"]
        row = next((item for item in items if item["pupil_id"] == pupil.pupil_id), None)
        if row is None:
            raise SeedError(f"identification does not list pupil {pupil.pupil_id}")
        return dict(row)

    def depart(self) -> None:
        departure = self.scenario.departure
        pupil, plan = departure.pupil, departure.plan
        who = teacher(pupil.school_id)
        with self.progress.phase("departures", 1) as phase:
            row = self.departure_row()
            if row["status"] != "departed":
                body = {
                    "reason": departure.reason,
                    "on": departure.on.isoformat(),
                    "expected_version": row["version"],
                }
                self.api.post("identification", f"/pupils/{pupil.pupil_id}/departure", who, body)
            self.api.wait_for(
                "planning to close the plan of the pupil who left",
                lambda: self.state(plan)["status"] == "closed",
                LOG_HINT,
            )
            phase.advance()

    def evaluate(self) -> None:
        plans = [p for p in self.scenario.plans_in(SEMESTER) if p.evaluation is not None]
        with self.progress.phase("evaluations", len(plans)) as phase:
            for plan in plans:
                evaluation = plan.evaluation
                assert evaluation is not None
                state = self.state(plan)
                status = state["status"]
                if status in (*IN_FORCE, "suspended"):
                    body = {
                        "risk_outcomes": evaluation.risk_outcomes,
                        "outcome": evaluation.outcome,
                    }
                    status = self.command(plan, "evaluate", body=body)["status"]
                if evaluation.close and status == "evaluated" and not state["next_plan_id"]:
                    self.command(plan, "close")
                phase.advance()

    def continue_plan(self) -> None:
        plan = self.scenario.continued
        successor = plan.next
        assert successor is not None
        with self.progress.phase(f"continued into {NEXT_SEMESTER}", 1) as phase:
            successor.plan_id = self.state(plan)["next_plan_id"]
            if successor.plan_id is None:
                body = {"semester": NEXT_SEMESTER}
                key = self.key("continue", plan.key)
                successor.plan_id = self.command(plan, "continue", body=body, key=key)["plan_id"]
            state = self.state(successor)
            carried = {(m["kind"], m["risk_code"]): m["measure_id"] for m in state["measures"]}
            if set(carried) != {(m.kind, m.risk_code) for m in successor.measures}:
                raise SeedError("planning carried other measures over than the scenario expects")
            for measure in successor.measures:
                measure.measure_id = carried[(measure.kind, measure.risk_code)]
            self.through_approval(successor, state)
            if any(m.material for m in successor.measures):
                self.wait_for_provisions(successor)
            phase.advance()

    # -- the transfer --------------------------------------------------------------------------
    def enrolled_at_new_school(self) -> dict[str, Any] | None:
        """The transferred pupil as the new school sees them, once enrolled there."""
        move = self.scenario.transfer
        path = f"/pupils/{move.pupil.pupil_id}"
        who = teacher(move.to_school_id)
        row = self.api.get("identification", path, who, accept=(200, 404))
        return row if row.get("school_id") == move.to_school_id else None

    def transfer(self) -> None:
        """The pupil leaves for the new school, which registers the pupil: identification
        enrols the same pupil there again (same id, no sign carried over). The new school
        records a sign of its own, and planning lists the pupil at risk there."""
        move = self.scenario.transfer
        pupil, to_school = move.pupil, move.to_school_id
        with self.progress.phase("transfers (enrolled again at the new school)", 1) as phase:
            row = self.enrolled_at_new_school()
            if row is None:
                self.leave_for_new_school()
                body = {**pupil.registration(), "school_id": to_school}
                key = self.key("transfer", pupil.key)
                row = self.api.post("identification", "/pupils", teacher(to_school), body, key=key)
                if row["pupil_id"] != pupil.pupil_id:
                    raise SeedError("identification registered a new pupil, not the one who moved")
            if not any(s["code"] == move.sign.code for s in row.get("risk_signs", [])):
                body = {
                    "code": move.sign.code,
                    "observed_on": move.sign.observed_on.isoformat(),
                    "evidence": move.sign.evidence,
                    "expected_version": row["version"],
                }
                path = f"/pupils/{pupil.pupil_id}/risk-signs"
                key = self.key("transfer-sign", pupil.key)
                self.api.post("identification", path, teacher(to_school), body, key=key)

            def listed() -> bool:
                query = {"school_id": to_school}
                items = self.api.get("planning", "/pupils-at-risk", NATIONAL, params=query)
                return any(i["pupil_id"] == pupil.pupil_id for i in items["items"])

            self.api.wait_for("planning to list the pupil at risk at the new school", listed)
            phase.advance()

    def leave_for_new_school(self) -> None:
        move = self.scenario.transfer
        who = teacher(move.pupil.school_id)
        row = self.api.get("identification", f"/pupils/{move.pupil.pupil_id}", who)
        if row["status"] == "departed":
            return
        body = {
            "reason": "transferred",
            "on": move.on.isoformat(),
            "to_school_id": move.to_school_id,
            "expected_version": row["version"],
        }
        self.api.post("identification", f"/pupils/{move.pupil.pupil_id}/departure", who, body)


def seed_demo(api: Api, progress: Progress, *, pupils: int = 150, seed: int = 2019) -> Scenario:
    """Build the scenario from the schools and catalogue the system serves, and send it."""
    from demo.build import build

    schools = api.get("identification", "/schools", NATIONAL)["items"]
    daugavpils = [s for s in schools if s["municipality"] == "daugavpils"]
    if not daugavpils:
        raise SeedError("identification knows no school of Daugavpils")
    catalogue = api.get("identification", "/risk-factors", NATIONAL)["items"]
    scenario = build(daugavpils, catalogue, pupils=pupils, seed=seed)
    progress.line(
        f"Seeding the Daugavpils demo: {len(daugavpils)} schools, {pupils} pupils "
        f"({len(scenario.at_risk)} at risk), {len(scenario.plans)} plans"
    )
    Seeder(api, scenario, progress).run()
    return scenario
