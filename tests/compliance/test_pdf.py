"""Every framework's report renders to a PDF that opens (pdfinfo), carries its control ids
as text (pdftotext) and rasterises (pdftoppm) — poppler-utils, which CI installs."""

import re
import shutil
import subprocess

import pytest

from controlplane.compliance import services
from controlplane.compliance.catalog import FRAMEWORK_IDS, load_catalogs
from controlplane.compliance.pdf import summary_chart

pytestmark = pytest.mark.django_db

POPPLER = all(shutil.which(tool) for tool in ("pdfinfo", "pdftotext", "pdftoppm"))
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdfinfo, pdftotext, pdftoppm) is not installed")


@pytest.fixture
def report_for(deployment, build_inline, django_capture_on_commit_callbacks):
    def make(framework):
        d = deployment(decision_logging=False)
        with django_capture_on_commit_callbacks(execute=True):
            report = services.request_gap_report(framework=framework, environment=d.environment, by=d.admin)
        report.refresh_from_db()
        assert report.status == "done", report.error
        return report

    return make


@needs_poppler
@pytest.mark.parametrize("framework", FRAMEWORK_IDS)
def test_pdf_opens_names_every_control_and_renders(report_for, framework, tmp_path):
    report = report_for(framework)
    path = tmp_path / "report.pdf"
    path.write_bytes(services.report_pdf(report))

    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))
    assert pages >= 4  # cover, summary, controls, appendix
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    embedded = [line.split()[0].split("+")[-1] for line in fonts.splitlines()[2:] if line.strip()]
    assert embedded and all(name.startswith("Warden-") for name in embedded), f"only the shipped fonts: {embedded}"

    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = re.sub(r"\s+", "", text)
    for control in load_catalogs()[framework].controls:
        assert control.id.replace(" ", "") in flat, f"{control.id} missing from the PDF text"
    assert "Environment prod" in text and f"Page 1 of {pages}" in text
    assert f"Page {pages} of {pages}" in text
    assert report.scope["last_checkpoint"]["merkle_root"] in flat, "checkpoint root in the appendix"

    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_summary_chart_draws_one_segment_per_status_present():
    svg = summary_chart({"met": 3, "partial": 1, "gap": 0, "manual": 2, "not_applicable": 0, "score": 87.5})
    assert svg.count("<path") == 3
    assert "87.5%" in svg
    full = summary_chart({"met": 4, "score": 100.0})
    assert "<circle" in full and "<path" not in full
