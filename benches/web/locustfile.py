"""Bench (driven by benches/src/bin/web.rs): the consultation centre's API mix under many
simulated users, with Locust. Each user logs in once as one of the demo roles (the password
in BENCH_PASSWORD), then, waiting 1-3 s between steps as a person would, makes the calls its
role's pages make: worklists, a case, patient search, studies, ICD-10 suggestions, experts and
slots, notifications, report reads, a schedule dry run, statistics, and new drafts (a write).
GET /healthz runs alongside as the reference: the same server's floor under the same load.
"""

import os
import random

from locust import FastHttpUser, between, task

PASSWORD = os.environ["BENCH_PASSWORD"]
ROLES = ["doctor.zhao", "doctor.zhao", "doctor.qian", "expert.wang", "centre.zhou", "qc.wu"]


class Person(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        self.login = random.choice(ROLES)
        r = self.client.post(
            "/api/v1/auth/login",
            json={"login": self.login, "password": PASSWORD},
            name="POST /api/v1/auth/login",
        )
        self.headers = {"Authorization": "Bearer " + r.json()["token"]}
        me = self.get("/api/v1/me").json()
        self.role = me["role"]
        cases = self.get("/api/v1/consultations").json()["items"]
        self.case = cases[0]["id"] if cases else None
        self.patient = cases[0]["patient"] if cases else None
        self.expert = self.get("/api/v1/experts").json()["items"][0]["id"]

    def get(self, path, name=None):
        return self.client.get(path, headers=self.headers, name=name or path)

    @task(4)
    def worklist(self):
        # A page (re)load asks who is signed in, then the list and the unread notices.
        self.get("/api/v1/me")
        self.get("/api/v1/consultations")
        self.get("/api/v1/notifications")

    @task(3)
    def one_case(self):
        self.get("/api/v1/experts")
        if self.case:
            self.get(f"/api/v1/consultations/{self.case}", name="GET /api/v1/consultations/{id}")
            self.get(f"/api/v1/patients/{self.patient}", name="GET /api/v1/patients/{id}")

    @task(2)
    def apply(self):
        if self.role != "doctor":
            return
        self.get("/api/v1/patients?q=%E7%8E%8B", name="GET /api/v1/patients?q=")
        if self.patient:
            self.get(f"/api/v1/patients/{self.patient}/studies", name="GET /api/v1/patients/{id}/studies")
        self.get("/api/v1/icd10?q=I6", name="GET /api/v1/icd10?q=")
        self.get(f"/api/v1/experts/{self.expert}/slots?free=true", name="GET /api/v1/experts/{id}/slots")
        if self.patient and random.random() < 0.2:
            self.client.post(
                "/api/v1/consultations",
                headers=self.headers,
                json={"patient": self.patient, "kind": "remote", "mode": "appointment", "reason": "负载测试"},
                name="POST /api/v1/consultations",
            )

    @task(1)
    def report(self):
        if self.role == "expert" and self.case:
            self.get("/api/v1/report-templates")
            with self.client.get(
                f"/api/v1/consultations/{self.case}/report",
                headers=self.headers,
                name="GET /api/v1/consultations/{id}/report",
                catch_response=True,
            ) as r:
                # No report written yet is an answer too.
                if r.status_code in (200, 404):
                    r.success()

    @task(1)
    def centre(self):
        if self.role != "coordinator":
            return
        self.get("/api/v1/consultations?limit=200", name="GET /api/v1/consultations?limit=200")
        self.get(
            "/api/v1/statistics?kind=consultation&by=month&from=2026-01-01&to=2026-12-31",
            name="GET /api/v1/statistics",
        )
        if self.case:
            with self.client.post(
                f"/api/v1/consultations/{self.case}/schedule-preview",
                headers=self.headers,
                json={"at": 4102444800000, "experts": [self.expert], "room": "会诊室1"},
                name="POST /api/v1/consultations/{id}/schedule-preview",
                catch_response=True,
            ) as r:
                # A draft cannot be scheduled: the refusal is the answer measured.
                if r.status_code in (200, 409):
                    r.success()

    @task(2)
    def reference(self):
        self.client.get("/healthz", name="GET /healthz (reference)")
