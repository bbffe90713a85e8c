"""Reading ``/metrics`` the way Prometheus does: prometheus_client's own text parser, never our
own string matching, so what passes here is what a real scraper can ingest."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    families: dict[str, str]  # family name -> type
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The one sample ``name`` with exactly these labels (0 when absent, as Prometheus
        treats a counter that was never incremented)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """Samples named ``name`` whose labels include these."""
        return [s for s in self.samples if s.name == name
                and all(s.labels.get(k) == v for k, v in labels.items())]

    def label_values(self) -> set[str]:
        return {value for sample in self.samples for value in sample.labels.values()}


def parse(text: str) -> Scrape:
    families: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        samples.extend(family.samples)
    return Scrape(families, samples)


async def scrape(http: httpx.AsyncClient, url: str = "/metrics") -> Scrape:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


# What a bounded label value looks like here: ids, kinds, reasons, codes, le buckets, versions.
BOUNDED_LABEL = re.compile(r"^[A-Za-z0-9_.+:-]{0,64}$")
