"""Every framework's report renders to a PDF that opens (pdfinfo), carries its control ids
as text (pdftotext) and rasterises (pdftoppm) — poppler-utils, which CI installs."""

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controlplane.audit.models import CheckpointKey
from controlplane.compliance import attestations, services
from controlplane.compliance.catalog import FRAMEWORK_IDS, load_catalogs
from controlplane.compliance.pdf import CHART_WIDTH, summary_chart

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

    assert "Self-assessment, not an audit opinion" in text and "Assumed scope" in text
    assert "Methodology" in text and "observation window" in text
    assert f"Catalog version {report.catalog_version}" in text
    assert "Sign-off" in text and "Prepared by" in text and "Reviewed by" in text and "Approved by" in text
    assert "coverage" in text and "Collected " in text

    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "2", "-l", "2", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert_chart_labels_inside_the_drawing(path, report.summary)


def _chart_page(path) -> tuple[int, str]:
    for page in range(1, 5):
        xml = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-bbox", str(path), "-"],
                             capture_output=True, text=True, check=True).stdout
        if re.search(r">n=\d+</word>", xml):
            return page, xml
    raise AssertionError("no chart labels (n=…) found on the first pages")


def assert_chart_labels_inside_the_drawing(path, summary):
    """The chart sits at the page's left margin (15 mm) and is CHART_WIDTH px (0.75 pt each)
    wide: every count label must end inside it, as laid out in the rendered PDF."""
    page, xml = _chart_page(path)
    left = 15 / 25.4 * 72
    right = left + CHART_WIDTH * 0.75
    labels = re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">n=(\d+)</word>', xml)
    assert len(labels) == 6, labels
    assert sorted(int(n) for _, _, n in labels) == sorted(int(summary.get(s, 0) or 0) for s in
                                                          ("met", "partial", "gap", "not_tested", "manual",
                                                           "not_applicable"))
    for x_min, x_max, n in labels:
        assert left <= float(x_min) and float(x_max) <= right + 0.5, f"label n={n} ends at {x_max} > {right}"


def test_summary_chart_draws_one_segment_per_status_present():
    svg = summary_chart({"met": 3, "partial": 1, "gap": 0, "manual": 2, "not_applicable": 0, "score": 87.5,
                         "coverage": 66.7})
    assert svg.count("<path") == 3
    assert "87.5%" in svg and "cov. 66.7%" in svg
    full = summary_chart({"met": 4, "score": 100.0})
    assert "<circle" in full and "<path" not in full


def test_every_chart_label_fits_the_drawing_by_the_fonts_own_metrics():
    """Measured with the shipped font's advance widths, for the widest bar and the longest
    count: the label the old chart clipped ("Partially met 15") now ends inside the box."""
    from fontTools.ttLib import TTFont

    from controlplane.compliance.pdf import FONT_DIR

    font = TTFont(str(FONT_DIR / "DejaVuSans.ttf"))
    cmap, advances, per_em = font.getBestCmap(), font["hmtx"].metrics, font["head"].unitsPerEm
    svg = summary_chart({"met": 9, "partial": 150, "gap": 3, "not_tested": 2, "manual": 40, "not_applicable": 100})
    labels = re.findall(r'<text x="([\d.]+)" y="[\d.]+"( text-anchor="middle")? font-size="([\d.]+)"[^>]*>([^<]*)</text>',
                        svg)
    assert labels
    for x, middle, size, text in labels:
        width = sum(advances[cmap[ord(ch)]][0] for ch in text) * float(size) / per_em
        start = float(x) - (width / 2 if middle else 0)
        assert 0 <= start and start + width <= CHART_WIDTH, (text, start + width)


@needs_poppler
def test_the_pdf_is_signed_and_verifies_offline_and_a_changed_byte_fails(report_for, tmp_path):
    report = report_for("soc2")
    pdf = services.report_pdf(report)
    report.refresh_from_db()
    assert report.pdf_sha256 == hashlib.sha256(pdf).hexdigest()
    (tmp_path / "r.pdf").write_bytes(pdf)
    (tmp_path / "r.pdf.sig.json").write_text(json.dumps(report.pdf_signature))
    key = CheckpointKey.objects.get(key_id=report.pdf_signature["key_id"]).public_key
    ok = warden("report", "verify", str(tmp_path / "r.pdf"), "--public-key", key)
    assert ok.returncode == 0 and "OK: report PDF" in ok.stdout, ok.stdout + ok.stderr
    middle = len(pdf) // 2
    (tmp_path / "r.pdf").write_bytes(pdf[:middle] + bytes([pdf[middle] ^ 1]) + pdf[middle + 1:])
    bad = warden("report", "verify", str(tmp_path / "r.pdf"), "--public-key", key)
    assert bad.returncode == 1 and "SHA-256 of the content" in bad.stdout
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    (tmp_path / "r.pdf").write_bytes(pdf)
    untrusted = warden("report", "verify", str(tmp_path / "r.pdf"), "--public-key", other)
    assert untrusted.returncode == 1 and "not among the trusted keys" in untrusted.stdout


@needs_poppler
def test_a_sign_off_appears_in_the_pdf_which_is_signed_again(report_for, tmp_path, user_with_role):
    report = report_for("hipaa")
    before = report.pdf_sha256
    attestations.sign_off(report, role="preparer", by=user_with_role("admin", "alice"), comment="ready")
    report.refresh_from_db()
    assert not report.pdf and report.pdf_sha256 == ""
    pdf = services.report_pdf(report)
    report.refresh_from_db()
    assert report.pdf_sha256 not in ("", before) and report.pdf_sha256 == hashlib.sha256(pdf).hexdigest()
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    block = text[text.index("Sign-off"):]
    assert "alice" in block and "ready" in block and "— not signed —" in block


def test_the_evidence_package_verifies_offline_and_names_a_tampered_file(report_for, tmp_path, admin_client):
    report = report_for("hipaa")
    response = admin_client.get(f"/api/v1/compliance/reports/{report.pk}/package/?seed=7&sample_size=2",
                                HTTP_ACCEPT="application/zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    path = tmp_path / "evidence.zip"
    path.write_bytes(response.content)
    report.refresh_from_db()
    key = report.pdf_signature["public_key"]
    ok = warden("report", "verify", str(path), "--public-key", key)
    assert ok.returncode == 0 and "OK: evidence package" in ok.stdout, ok.stdout + ok.stderr
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        listing = json.loads(archive.read("populations/agent_identity.json"))
        manifest = json.loads(archive.read("manifest.json"))
    assert {"report.json", "report.pdf", "report.pdf.sig.json", "manifest.json", "manifest.sig.json"} <= set(names)
    assert listing["population_size"] == 1 and listing["sample"]["seed"] == 7
    assert {f["name"] for f in manifest["files"]} == set(names) - {"manifest.json", "manifest.sig.json"}
    again = admin_client.get(f"/api/v1/compliance/reports/{report.pk}/package/?seed=7&sample_size=2")
    with zipfile.ZipFile(io.BytesIO(again.content)) as archive:
        assert json.loads(archive.read("populations/agent_identity.json"))["sample"] == listing["sample"]
    assert admin_client.get(f"/api/v1/compliance/reports/{report.pk}/package/?seed=x").status_code == 400
    assert admin_client.get(f"/api/v1/compliance/reports/{report.pk}/package/?sample_size=0").status_code == 400

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "populations/agent_identity.json":
                data = data.replace(b"billing-bot", b"billing-bot-x")
            dst.writestr(name, data)
    bad = warden("report", "verify", str(tampered), "--public-key", key)
    assert bad.returncode == 1 and "populations/agent_identity.json: SHA-256" in bad.stdout


def warden(*args):
    return subprocess.run([sys.executable, "-m", "agents_sdk", *args], capture_output=True, text=True)
