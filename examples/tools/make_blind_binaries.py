"""Generate the DOCX and PDF documents of the blind example person (examples/blind/corpus/documents).

Run from the repository root:  .venv/bin/python examples/tools/make_blind_binaries.py

The output is byte-for-byte reproducible: the PDFs carry fixed creation dates and use the core fonts
(no font files from the system), and the DOCX files get fixed core properties and fixed zip timestamps.
Needs fpdf2 and python-docx.
"""
from __future__ import annotations

import datetime as dt
import io
import unicodedata
import zipfile
from pathlib import Path

import docx
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Pt
from fpdf import FPDF

OUT = Path(__file__).resolve().parent.parent / "blind" / "corpus" / "documents"
NZST = dt.timezone(dt.timedelta(hours=12))
NZDT = dt.timezone(dt.timedelta(hours=13))


# --------------------------------------------------------------------------------------------- DOCX
def _save_docx(document: docx.document.Document, path: Path, when: dt.datetime, author: str, title: str) -> None:
    cp = document.core_properties
    cp.author = author
    cp.last_modified_by = author
    cp.title = title
    cp.created = when.astimezone(dt.UTC).replace(tzinfo=None)
    cp.modified = cp.created
    cp.last_printed = cp.created
    cp.revision = 1
    buf = io.BytesIO()
    document.save(buf)
    # rewrite the zip with fixed timestamps and a stable order, so the file is reproducible
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=(2025, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, src.read(info.filename))
    path.write_bytes(out.getvalue())


def _kv_table(document, rows, widths=None):
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for key, value in rows:
        cells = table.add_row().cells
        cells[0].text = key
        cells[1].text = value
        for run in cells[0].paragraphs[0].runs:
            run.bold = True
    return table


def make_cv(path: Path) -> None:
    d = docx.Document()
    d.styles["Normal"].font.name = "Calibri"
    d.styles["Normal"].font.size = Pt(10.5)
    d.add_heading("Dr Þorsteinn Einarsson", level=0)
    p = d.add_paragraph("Geothermal reservoir engineer  ·  CPEng  ·  Curriculum vitae, February 2025")
    p.alignment = WD_ALIGN_PARAGRAPH.LEFT

    d.add_heading("Personal details", level=1)
    _kv_table(d, [
        ("Date of birth", "03.04.1967"),
        ("Place of birth", "Ísafjörður, Iceland"),
        ("Citizenship", "Icelandic"),
        ("Residency status", "New Zealand Permanent Resident Visa (since 2014)"),
        ("Address", "14 Rifle Range Road, Taupō 3330, New Zealand"),
        ("Mobile", "+64 21 483 2297"),
        ("Email", "steini.einarsson@example.net"),
    ])

    d.add_heading("Profile", level=1)
    d.add_paragraph(
        "Reservoir engineer with 26 years in geothermal development in Iceland and New Zealand: numerical "
        "reservoir modelling (TOUGH2/TOUGH3, Leapfrog), well testing, reinjection strategy and resource "
        "consents. Mentor to graduate engineers; occasional guest lecturer at the University of Auckland "
        "Geothermal Institute.")

    d.add_heading("Professional experience", level=1)
    t = d.add_table(rows=1, cols=3)
    t.style = "Table Grid"
    hdr = t.rows[0].cells
    hdr[0].text, hdr[1].text, hdr[2].text = "Period", "Position", "Employer"
    for row in [
        ("Jun 2009 – present", "Senior Reservoir Engineer", "Pūhaka Energy Ltd, Taupō, New Zealand"),
        ("Sep 1998 – May 2009", "Reservoir Engineer", "Hengill Orka hf., Reykjavík, Iceland"),
        ("1993 – 1994", "Field Engineer (drilling)", "Jarðboranir Vestfjarða ehf., Ísafjörður"),
    ]:
        cells = t.add_row().cells
        for c, v in zip(cells, row, strict=True):
            c.text = v
    d.add_paragraph(
        "At Pūhaka: responsible for the reservoir model of the Wairakei-Tauhara eastern margin, the "
        "reinjection programme (14 wells) and the technical evidence for two resource consent renewals.")

    d.add_heading("Education", level=1)
    for line in [
        "PhD in Geothermal Engineering, University of Auckland, 1998. Thesis: Two-phase flow in fractured "
        "reinjection zones.",
        "MSc in Mechanical Engineering (geothermal), University of Iceland, 1993.",
        "BSc in Mechanical Engineering, University of Iceland, 1990.",
    ]:
        d.add_paragraph(line, style="List Bullet")

    d.add_heading("Languages", level=1)
    for line in ["Icelandic (native)", "English (fluent)", "Danish (good)", "te reo Māori (beginner)"]:
        d.add_paragraph(line, style="List Bullet")

    d.add_heading("Professional memberships", level=1)
    d.add_paragraph("Engineering New Zealand, Chartered Professional Engineer (CPEng), membership no. 1048213.")
    d.add_paragraph("International Geothermal Association; New Zealand Geothermal Association (committee 2016–2020).")

    d.add_heading("Interests", level=1)
    d.add_paragraph("Fly fishing (Tongariro and Taupō rivers), tramping, choral singing (bass).")

    d.add_heading("Referees", level=1)
    _kv_table(d, [
        ("Graeme Holloway", "General Manager Reservoir Engineering, Pūhaka Energy Ltd\n"
                            "g.holloway@puhaka-energy.example · +64 7 376 4401 · 027 445 9102"),
        ("Prof. Sadiq Rahman", "Geothermal Institute, University of Auckland\n"
                               "s.rahman@auckland.example · +64 9 923 8811"),
    ])
    _save_docx(d, path, dt.datetime(2025, 2, 10, 21, 30, tzinfo=NZDT), "Þorsteinn Einarsson",
               "Curriculum vitae – Þorsteinn Einarsson")


def make_tenancy(path: Path) -> None:
    d = docx.Document()
    d.styles["Normal"].font.name = "Arial"
    d.styles["Normal"].font.size = Pt(10)
    head = d.add_paragraph()
    r = head.add_run("ŌTARI PROPERTY MANAGEMENT LTD")
    r.bold = True
    r.font.size = Pt(14)
    d.add_paragraph("88 Tinakori Road, Thorndon, Wellington 6011  ·  04 472 9810  ·  rentals@otari-pm.example")
    d.add_heading("Residential Tenancy Agreement", level=0)
    d.add_paragraph("Residential Tenancies Act 1986. This agreement is between the landlord and the tenants named "
                    "below. Agreement reference OPM-2025-0417.")

    d.add_heading("1. Landlord", level=1)
    _kv_table(d, [
        ("Landlord", "Susan Margaret Pryor"),
        ("Managed by", "Ōtari Property Management Ltd (agent), property manager: Josh Tenari"),
        ("Address for service", "88 Tinakori Road, Thorndon, Wellington 6011"),
        ("Phone", "04 472 9810 / 021 902 5530 (after hours)"),
        ("Email", "rentals@otari-pm.example"),
    ])

    d.add_heading("2. Tenant(s)", level=1)
    t = d.add_table(rows=1, cols=3)
    t.style = "Table Grid"
    h = t.rows[0].cells
    h[0].text, h[1].text, h[2].text = "", "Tenant 1", "Tenant 2"
    for row in [
        ("Full name", "Þorsteinn Einarsson", "Helen Margaret Carmody"),
        ("Date of birth", "3 April 1967", "22 November 1969"),
        ("Mobile", "021 483 2297", "021 733 0452"),
        ("Email", "steini.einarsson@example.net", "helen.carmody@example.net"),
        ("Address for service until the tenancy starts", "14 Rifle Range Road, Taupō 3330", "14 Rifle Range Road, Taupō 3330"),
    ]:
        cells = t.add_row().cells
        for c, v in zip(cells, row, strict=True):
            c.text = v

    d.add_heading("3. Premises and tenancy", level=1)
    _kv_table(d, [
        ("Address of premises", "2/27 Aro Street, Aro Valley, Wellington 6021"),
        ("Description", "Rear unit, two bedrooms, one bathroom, garden shed. No off-street parking."),
        ("Tenancy start date", "17 May 2025"),
        ("Type of tenancy", "Periodic"),
        ("Maximum number of occupants", "3"),
        ("Chattels", "Oven, rangehood, heat pump, curtains, 2 smoke alarms"),
    ])

    d.add_heading("4. Rent and bond", level=1)
    _kv_table(d, [
        ("Rent", "$740.00 per week, payable fortnightly in advance ($1,480.00)"),
        ("First payment", "17 May 2025"),
        ("Pay rent to", "Ōtari Property Management Trust Account, 02-0500-0123456-000, reference OPM0417"),
        ("Bond", "$2,960.00 (four weeks' rent), lodged with Tenancy Services"),
    ])

    d.add_heading("5. Other terms", level=1)
    for line in [
        "Pets: none without the landlord's written consent.",
        "Smoking is not permitted inside the premises.",
        "The tenants will keep the garden and the access steps in a reasonably tidy condition.",
        "Insulation statement and healthy homes compliance statement attached (Schedules A and B).",
    ]:
        d.add_paragraph(line, style="List Number")

    d.add_heading("Signatures", level=1)
    d.add_paragraph("Landlord's agent: J. Tenari, for Ōtari Property Management Ltd        Date: 8 May 2025")
    d.add_paragraph("Tenant 1: Þorsteinn Einarsson        Date: 8 May 2025")
    d.add_paragraph("Tenant 2: Helen Carmody        Date: 8 May 2025")
    _save_docx(d, path, dt.datetime(2025, 5, 8, 14, 0, tzinfo=NZST), "Josh Tenari",
               "Residential Tenancy Agreement – 2/27 Aro Street")


# ---------------------------------------------------------------------------------------------- PDF
_ASCII_FOLD = {"ā": "a", "ē": "e", "ī": "i", "ō": "o", "ū": "u", "Ā": "A", "Ē": "E", "Ī": "I", "Ō": "O",
               "Ū": "U", "–": "-", "—": "-", "’": "'", "·": "-"}


def latin1(text: str) -> str:
    """Core PDF fonts are Latin-1: keep Þ, ð, í, ö; drop the macrons (as many NZ payroll systems do)."""
    out = "".join(_ASCII_FOLD.get(ch, ch) for ch in text)
    out.encode("latin-1")  # fail loudly on anything else
    return unicodedata.normalize("NFC", out)


class Doc(FPDF):
    def __init__(self, letterhead: list[str], footer: str, when: dt.datetime, title: str, author: str):
        super().__init__(format="A4")
        self._letterhead = letterhead
        self._footer = footer
        self.set_creation_date(when)
        self.set_title(latin1(title))
        self.set_author(latin1(author))
        self.set_creator("make_blind_binaries.py")
        self.set_producer("make_blind_binaries.py")
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(True, 20)
        self.add_page()

    def header(self):
        self.set_font("Helvetica", "B", 15)
        self.cell(0, 8, latin1(self._letterhead[0]), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "", 8.5)
        for line in self._letterhead[1:]:
            self.cell(0, 4.5, latin1(line), new_x="LMARGIN", new_y="NEXT")
        self.line(18, self.get_y() + 2, 192, self.get_y() + 2)
        self.ln(6)

    def footer(self):
        self.set_y(-14)
        self.set_font("Helvetica", "", 7.5)
        self.cell(0, 5, latin1(self._footer), align="C")

    def heading(self, text, size=12):
        self.set_font("Helvetica", "B", size)
        self.cell(0, 7, latin1(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def para(self, text, size=10):
        self.set_font("Helvetica", "", size)
        self.multi_cell(0, 5, latin1(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def table_rows(self, rows, widths=(60, 114), header=None, size=9.5):
        self.set_font("Helvetica", "", size)
        with self.table(col_widths=widths, first_row_as_headings=header is not None, line_height=5.5,
                        text_align="LEFT") as table:
            if header is not None:
                r = table.row()
                for v in header:
                    r.cell(latin1(v))
            for row in rows:
                r = table.row()
                for v in row:
                    r.cell(latin1(v))
        self.ln(3)


def make_offer(path: Path) -> None:
    pdf = Doc(["Tāwhiri Geoscience Ltd",
               "Level 4, 99 Customhouse Quay, Wellington 6011, New Zealand",
               "+64 4 801 2290  |  hello@tawhiri-geo.example  |  NZBN 9429048812345"],
              "Tāwhiri Geoscience Ltd - private and confidential",
              dt.datetime(2025, 3, 12, 15, 30, tzinfo=NZDT), "Offer of employment", "Priya Nair")
    pdf.para("12 March 2025\n\nDr Þorsteinn Einarsson\n14 Rifle Range Road\nTaupō 3330")
    pdf.heading("Offer of employment - Principal Geothermal Engineer")
    pdf.para("Dear Dr Einarsson,\n\nFollowing your interview on 17 February, we are delighted to offer you "
             "the position of Principal Geothermal Engineer with Tāwhiri Geoscience Ltd, on the terms below "
             "and in the attached individual employment agreement.")
    pdf.table_rows([
        ("Position", "Principal Geothermal Engineer"),
        ("Team", "Geothermal"),
        ("Reporting to", "Dr Mereana Tawhai, Head of Geothermal"),
        ("Start date", "Monday, 2 June 2025"),
        ("Place of work", "Level 4, 99 Customhouse Quay, Wellington"),
        ("Hours", "40 hours per week, Monday to Friday, flexible"),
        ("Base salary", "NZD 168,000 gross per annum, paid monthly on the 15th"),
        ("KiwiSaver", "Employer contribution 3% (on top of base salary)"),
        ("Annual leave", "5 weeks per year"),
        ("Trial period", "None"),
        ("Notice period", "8 weeks, either side"),
    ])
    pdf.para("This offer is conditional on your continued right to work in New Zealand. Please confirm your "
             "acceptance by replying to Priya Nair (priya.nair@tawhiri-geo.example) by 21 March 2025.")
    pdf.para("We are very much looking forward to working with you.\n\nNgā mihi nui,\n\n\nMereana Tawhai\n"
             "Head of Geothermal\n\nPriya Nair\nPeople & Culture Lead, 022 318 7741")
    pdf.output(str(path))


def make_payslip(path: Path) -> None:
    pdf = Doc(["Tāwhiri Geoscience Ltd - Payslip",
               "Level 4, 99 Customhouse Quay, Wellington 6011  |  Payroll: payroll@tawhiri-geo.example  |  04 801 2290",
               "Employer IRD number 123-900-456"],
              "Questions about your pay? Contact People & Culture. Keep this payslip for your records.",
              dt.datetime(2025, 7, 15, 7, 0, tzinfo=NZST), "Payslip July 2025", "Tawhiri Geoscience payroll")
    pdf.heading("PAYSLIP - pay date 15/07/2025")
    pdf.table_rows([
        ("Employee", "Þorsteinn Einarsson"),
        ("Employee no.", "TG-0147"),
        ("Position", "Principal Geothermal Engineer"),
        ("Address", "2/27 Aro Street, Aro Valley, Wellington 6021"),
        ("IRD number", "118-327-465"),
        ("Tax code", "M"),
        ("Pay period", "16/06/2025 - 15/07/2025 (monthly)"),
        ("Annual salary", "$168,000.00"),
        ("Start date", "02/06/2025"),
    ], widths=(50, 124))
    pdf.heading("Earnings and deductions", 11)
    pdf.table_rows([
        ("Ordinary salary", "", "14,000.00"),
        ("Gross pay", "", "14,000.00"),
        ("PAYE", "Tax code M", "-3,664.83"),
        ("ACC earners' levy", "", "-232.40"),
        ("KiwiSaver employee", "4%", "-560.00"),
        ("Net pay", "", "9,542.77"),
        ("Employer KiwiSaver (not deducted)", "3% less ESCT", "294.00"),
    ], widths=(80, 50, 44), header=("Item", "Rate / note", "Amount (NZD)"))
    pdf.heading("Payment", 11)
    pdf.table_rows([
        ("Paid to account", "06-0501-0845123-00"),
        ("Account name", "T Einarsson"),
        ("Year to date gross", "$19,600.00"),
        ("Annual leave balance", "12.3 days"),
    ], widths=(50, 124))
    pdf.output(str(path))


def make_policy_schedule(path: Path) -> None:
    pdf = Doc(["Tūī Mutual Insurance",
               "PO Box 1090, Hamilton 3240  |  0800 884 884  |  care@tuimutual.example",
               "Tūī Mutual Insurance Ltd, FSP 100482"],
              "This schedule forms part of your policy. Please check it and tell us within 14 days if anything is wrong.",
              dt.datetime(2025, 9, 1, 6, 0, tzinfo=NZST), "Motor policy schedule MV-2231487", "Tui Mutual Insurance")
    pdf.heading("MOTOR VEHICLE POLICY SCHEDULE", 13)
    pdf.table_rows([
        ("Policy number", "MV-2231487"),
        ("Type of cover", "Comprehensive"),
        ("Period of insurance", "12/09/2025 to 12/09/2026"),
        ("Policyholder", "Dr Þorsteinn Einarsson"),
        ("Date of birth", "03/04/1967"),
        ("Postal and garaging address", "2/27 Aro Street, Aro Valley, Wellington 6021"),
        ("Contact phone", "021 483 2297"),
        ("Email", "steini.einarsson@example.net"),
    ], widths=(60, 114))
    pdf.heading("Insured vehicle", 11)
    pdf.table_rows([
        ("Vehicle", "2016 Subaru Outback 2.5i Premium, station wagon, silver"),
        ("Registration", "MKT417"),
        ("VIN", "JF1BS9KL5GG021947"),
        ("Agreed value", "$18,500"),
        ("Parking overnight", "On street"),
        ("Use", "Private and commuting"),
    ], widths=(60, 114))
    pdf.heading("Drivers", 11)
    pdf.table_rows([
        ("Main driver", "Þorsteinn Einarsson", "03/04/1967", "EK482913", "Full, since 2009"),
        ("Named driver", "Helen Carmody", "22/11/1969", "DM730558", "Full, since 1994"),
    ], widths=(28, 44, 28, 30, 44), header=("Driver", "Name", "Date of birth", "Licence no.", "Licence"))
    pdf.heading("Premium and excess", 11)
    pdf.table_rows([
        ("Annual premium (incl. GST)", "$1,142.60"),
        ("Payment", "Annual, credit card ending 4417"),
        ("Standard excess", "$500"),
        ("Additional excess, drivers under 25", "$750"),
        ("No-claims bonus", "Maximum (since 2019)"),
    ], widths=(80, 94))
    pdf.output(str(path))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    make_cv(OUT / "cv-thorsteinn-einarsson-2025.docx")
    make_tenancy(OUT / "tenancy-agreement-2-27-aro-street.docx")
    make_offer(OUT / "tawhiri-offer-letter.pdf")
    make_payslip(OUT / "payslip-2025-07.pdf")
    make_policy_schedule(OUT / "tui-mutual-motor-schedule-2025.pdf")
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>8}  {p.relative_to(OUT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
