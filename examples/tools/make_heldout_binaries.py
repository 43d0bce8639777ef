"""Generate the PDF and DOCX documents of the held-out example person (examples/heldout).

Run from the repository root:

    .venv/bin/python examples/tools/make_heldout_binaries.py

Needs fpdf2 and python-docx. Writes into examples/heldout/corpus/documents/:

- cv-joost-van-den-berg-2025.pdf      Joost's CV as sent with his application (September 2025, Utrecht)
- forth-clyde-offer-letter.pdf        offer letter from Forth & Clyde Hydrology (October 2025; its start
                                      date was later moved)
- tenancy-agreement-dalmeny-st.pdf    Scottish private residential tenancy, key terms (December 2025)
- new-starter-form.docx               the employer's new starter form as he filled it in (January 2026)

Same approach as make_binaries.py (DejaVu Sans when installed, fixed creation dates).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

from docx import Document
from docx.shared import Pt
from fpdf import FPDF

OUT = Path(__file__).resolve().parents[1] / "heldout" / "corpus" / "documents"
DEJAVU = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
          Path("/usr/share/fonts/TTF/DejaVuSans.ttf")]


def _first(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.exists()), None)


class Doc(FPDF):
    def __init__(self, footer_text: str, created: dt.datetime) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text
        self.set_creation_date(created)
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(True, margin=18)
        regular = _first(DEJAVU)
        if regular is not None:
            bold = regular.with_name("DejaVuSans-Bold.ttf")
            self.add_font("Body", "", str(regular))
            self.add_font("Body", "B", str(bold if bold.exists() else regular))
            self.body_font, self.has_unicode = "Body", True
        else:
            self.body_font, self.has_unicode = "Helvetica", False

    def tx(self, text: str) -> str:
        if self.has_unicode:
            return text
        text = text.replace("€", "EUR ").replace("£", "GBP ").replace("–", "-").replace("’", "'").replace("·", "|")
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")

    def footer(self) -> None:
        if not self.footer_text:
            return
        self.set_y(-14)
        self.set_font(self.body_font, "", 8)
        self.cell(0, 10, self.tx(self.footer_text), align="C")

    def heading(self, text: str, size: int = 12) -> None:
        self.set_font(self.body_font, "B", size)
        self.multi_cell(0, 6.5, self.tx(text))
        self.ln(1.5)

    def para(self, text: str, size: float = 10) -> None:
        self.set_font(self.body_font, "", size)
        self.multi_cell(0, 5.2, self.tx(text))
        self.ln(1.5)


def make_cv() -> Path:
    pdf = Doc("", dt.datetime(2025, 9, 1, 20, 0, tzinfo=dt.UTC))
    pdf.set_title("CV - Joost van den Berg")
    pdf.set_author("Joost van den Berg")
    pdf.add_page()
    pdf.heading("JOOST VAN DEN BERG", 18)
    pdf.para("Hydraulic engineer · flood risk modelling · river and coastal systems", 11)
    pdf.para("Lange Nieuwstraat 41, 3512 PE Utrecht, the Netherlands · +31 6 4172 9083 · joost.vdberg@example.net", 9)
    pdf.para("Born 17 March 1988 in Zwolle · Dutch · Full driving licence (B)", 9)
    pdf.heading("Profile")
    pdf.para("Flood modeller with eleven years of consultancy experience in river, polder and urban flooding "
             "for Dutch water boards and municipalities. I like the whole chain: survey data, 1D/2D models, "
             "and explaining the results to people who have to decide and pay. Looking to move to coastal "
             "flood risk in the United Kingdom.")
    pdf.heading("Experience")
    pdf.para("Sep 2014 – present   Hydraulic Engineer, Waterkant Ingenieurs B.V., Utrecht", 10)
    pdf.para("– Lead modeller, Vecht dike reinforcement programme (2021–): 1D/2D SOBEK and D-Hydro models, "
             "breach scenarios, advice to the water board.\n"
             "– Urban pluvial flood studies for 14 municipalities; stress tests under the Delta Programme.\n"
             "– Mentor for graduate engineers; internal trainer for D-Hydro.", 9.5)
    pdf.para("Feb 2013 – Aug 2014   Graduate Engineer, Waterschap IJsselvallei, Zwolle", 10)
    pdf.para("– Levee inspections, culvert capacity checks, maintenance planning for regional waterways.", 9.5)
    pdf.heading("Education")
    pdf.para("2010 – 2012   MSc Civil Engineering (Hydraulic Engineering track), Delft University of Technology. "
             "Thesis: wave overtopping of grass-covered dikes under oblique wave attack.", 9.5)
    pdf.para("2006 – 2010   BSc Civil Engineering, Delft University of Technology", 9.5)
    pdf.heading("Skills")
    pdf.para("SOBEK, D-Hydro (Delft3D FM), HEC-RAS, Infoworks ICM (basic), Python (numpy, xarray, geopandas), "
             "QGIS, ArcGIS Pro.", 9.5)
    pdf.heading("Languages")
    pdf.para("Dutch (native) · English (fluent, C2) · German (good) · French (basic)", 9.5)
    pdf.heading("Interests")
    pdf.para("Birdwatching, bass guitar (covers band De Dijkgravers, 2015–2025), long-distance cycling "
             "(Utrecht – Inverness, 2019).", 9.5)
    path = OUT / "cv-joost-van-den-berg-2025.pdf"
    pdf.output(str(path))
    return path


def make_offer() -> Path:
    pdf = Doc("Forth & Clyde Hydrology Ltd · Registered in Scotland SC598214 · 3 Commercial Quay, Edinburgh EH6 6LX",
              dt.datetime(2025, 10, 20, 8, 0, tzinfo=dt.UTC))
    pdf.set_title("Offer of employment - Senior Flood Risk Engineer")
    pdf.set_author("Forth & Clyde Hydrology Ltd")
    pdf.add_page()
    pdf.heading("FORTH & CLYDE HYDROLOGY", 16)
    pdf.para("3 Commercial Quay, Edinburgh EH6 6LX · +44 131 496 0500 · forthclyde.example", 9)
    pdf.para("PRIVATE & CONFIDENTIAL\n\nJohannes Willem van den Berg\nLange Nieuwstraat 41\n3512 PE Utrecht\nNetherlands")
    pdf.para("20 October 2025")
    pdf.para("Dear Joost,")
    pdf.heading("Offer of employment: Senior Flood Risk Engineer")
    pdf.para("Following your interviews on 16 and 30 September, we are delighted to offer you the position of "
             "Senior Flood Risk Engineer in our Coastal Risk team, on the terms below. This offer is conditional "
             "on satisfactory references and on your right to work in the UK (we will sponsor a Skilled Worker visa).")
    for line in [
        "Job title: Senior Flood Risk Engineer",
        "Team: Coastal Risk",
        "You will report to: Fiona MacLeod, Head of Coastal Risk",
        "Start date: Monday 12 January 2026",
        "Salary: £58,500 gross per annum, paid monthly in arrears",
        "Place of work: 3 Commercial Quay, Edinburgh (hybrid; three days a week in the office)",
        "Hours: 37.5 per week, flexible between 07:00 and 19:00",
        "Holiday: 28 days plus 4 public holidays",
        "Pension: 6% employer contribution (salary sacrifice available)",
        "Relocation: reimbursement of moving costs up to £6,000 against receipts",
        "Notice: 3 months after the 6-month probation period",
    ]:
        pdf.para(line, 10)
    pdf.para("Please sign and return a copy of this letter by 31 October 2025. If you have any questions about "
             "the terms, contact Alison Grant, People Partner, on +44 131 496 0540 or alison.grant@forthclyde.example.")
    pdf.para("We very much look forward to working with you.")
    pdf.para("Yours sincerely,\n\nDr Morag Fairlie\nManaging Director, Forth & Clyde Hydrology Ltd")
    pdf.heading("Acceptance", 11)
    pdf.para("I accept the offer of employment on the terms set out in this letter.\n"
             "Signed: J.W. van den Berg          Date: 23 October 2025")
    path = OUT / "forth-clyde-offer-letter.pdf"
    pdf.output(str(path))
    return path


def make_tenancy() -> Path:
    pdf = Doc("Private Residential Tenancy – Flat 2F1, 14 Dalmeny Street", dt.datetime(2025, 12, 18, 15, 0, tzinfo=dt.UTC))
    pdf.set_title("Private Residential Tenancy Agreement - Flat 2F1, 14 Dalmeny Street")
    pdf.set_author("Caledonia Lettings")
    pdf.add_page()
    pdf.heading("PRIVATE RESIDENTIAL TENANCY AGREEMENT", 15)
    pdf.para("Based on the Scottish Government Model Private Residential Tenancy Agreement. Part 1: key terms.", 9)
    pdf.heading("1. The Let Property")
    pdf.para("Flat 2F1, 14 Dalmeny Street, Edinburgh, EH6 8PG. A one-bedroom flat on the second floor of a "
             "tenement, with living room, kitchen, bathroom and box room, let unfurnished apart from the white "
             "goods listed in the inventory.")
    pdf.heading("2. The Tenants")
    pdf.para("Tenant 1: Johannes Willem van den Berg, date of birth 17 March 1988, nationality Dutch, "
             "email joost.vdberg@example.net, telephone +31 6 4172 9083 (a UK number to follow after arrival).")
    pdf.para("Tenant 2: Femke Anna de Wit, date of birth 2 August 1990, nationality Dutch, "
             "email femke.dewit@example.net.")
    pdf.heading("3. The Landlord")
    pdf.para("Graham Soutar, 27 Craigleith Hill Avenue, Edinburgh EH4 2JX. Landlord registration number "
             "412087/230/26571.")
    pdf.heading("4. The Letting Agent")
    pdf.para("Caledonia Lettings, 88 Great Junction Street, Edinburgh EH6 5LB, telephone 0131 496 0815, "
             "kirsty@caledonialettings.example. Letting agent registration number LARN1904077.")
    pdf.heading("5. Start date")
    pdf.para("The tenancy starts on 15 January 2026. A private residential tenancy has no end date; it ends "
             "only as set out in Part 2 of this agreement.")
    pdf.heading("6. Rent and deposit")
    pdf.para("The rent is £1,275 per calendar month, payable in advance on the 15th day of each month. "
             "The deposit is £1,275 and will be lodged with SafeDeposits Scotland within 30 working days.")
    pdf.heading("7. Other terms")
    pdf.para("Pets: none without the landlord's written consent. Smoking is not permitted in the property. "
             "Bicycles may be kept in the shared back green store. Council tax (Band C) and utilities are "
             "paid by the tenants.")
    pdf.heading("Signatures")
    pdf.para("Signed electronically on 18 December 2025 by Johannes Willem van den Berg and Femke Anna de Wit "
             "(tenants) and by Kirsty Blair for Caledonia Lettings, on behalf of the landlord.")
    path = OUT / "tenancy-agreement-dalmeny-st.pdf"
    pdf.output(str(path))
    return path


def make_new_starter() -> Path:
    doc = Document()
    created = dt.datetime(2026, 1, 22, 21, 30)
    doc.core_properties.title = "New starter details - J. van den Berg"
    doc.core_properties.author = "Joost van den Berg"
    doc.core_properties.created = created
    doc.core_properties.modified = created
    doc.styles["Normal"].font.size = Pt(10.5)
    doc.add_heading("Forth & Clyde Hydrology Ltd – New starter details", level=0)
    doc.add_paragraph("Please complete and return to people@forthclyde.example before your first day. "
                      "We use these details for payroll, your personnel file and emergencies only.")
    doc.add_heading("Personal details", level=1)
    table = doc.add_table(rows=0, cols=2)
    rows = [
        ("Full name (as on passport)", "Johannes Willem van den Berg"),
        ("Known as", "Joost"),
        ("Date of birth", "17/03/1988"),
        ("Nationality", "Dutch"),
        ("Home address", "Flat 2F1, 14 Dalmeny Street, Edinburgh EH6 8PG, United Kingdom"),
        ("At this address since", "15 January 2026"),
        ("Previous address (last 3 years)", "Lange Nieuwstraat 41, 3512 PE Utrecht, Netherlands"),
        ("Personal mobile", "07700 900417"),
        ("Personal email", "joost.vdberg@example.net"),
        ("National Insurance number", "applied for on 21/01/2026 – will forward when it arrives"),
        ("Bank details (sort code / account number)", "to follow – account still being set up"),
    ]
    for k, v in rows:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = k, v
    doc.add_heading("Your role", level=1)
    table = doc.add_table(rows=0, cols=2)
    for k, v in [("Job title", "Senior Flood Risk Engineer"), ("Start date", "2 February 2026"),
                 ("Right to work", "Dutch passport and Skilled Worker visa (eVisa share code sent separately)")]:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = k, v
    doc.add_heading("Emergency contact", level=1)
    table = doc.add_table(rows=0, cols=2)
    for k, v in [("Name", "Femke de Wit"), ("Relationship", "Partner"), ("Phone", "07700 900862")]:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = k, v
    doc.add_paragraph("Declaration: the information above is correct to the best of my knowledge. "
                      "Signed: Joost van den Berg, 22 January 2026.")
    path = OUT / "new-starter-form.docx"
    doc.save(str(path))
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for make in (make_cv, make_offer, make_tenancy, make_new_starter):
        path = make()
        print(f"{path.relative_to(OUT.parents[2])}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
