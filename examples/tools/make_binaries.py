"""Generate the PDF and DOCX documents of the bundled example corpus (examples/maya).

Run from the repository root:

    .venv/bin/python examples/tools/make_binaries.py

Needs fpdf2 and python-docx. Writes into examples/maya/corpus/documents/:

- lease-rua-dos-anjos-45.pdf      Lisbon lease agreement (English translation)
- tidewater-offer-letter.pdf      signed offer letter from Tidewater Labs
- maya-cv-2025.docx               Maya's CV (April 2025)
- atlantico-review-2024.docx      annual performance review at Atlântico Freight

The PDFs use DejaVu Sans when it is installed (full Unicode); otherwise a core
font with accents transliterated to ASCII. Output is deterministic apart from
font availability.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

from docx import Document
from docx.shared import Pt
from fpdf import FPDF

OUT = Path(__file__).resolve().parents[1] / "maya" / "corpus" / "documents"
FIXED_DATE = dt.datetime(2025, 6, 14, 12, 0, tzinfo=dt.UTC)

DEJAVU = [
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
]
DEJAVU_BOLD = [p.with_name("DejaVuSans-Bold.ttf") for p in DEJAVU]


def _first(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.exists()), None)


class Doc(FPDF):
    """Small wrapper: Unicode font if available, ASCII transliteration otherwise."""

    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text
        self.set_creation_date(FIXED_DATE)
        self.set_margins(20, 20, 20)
        self.set_auto_page_break(True, margin=20)
        regular, bold = _first(DEJAVU), _first(DEJAVU_BOLD)
        if regular is not None:
            self.add_font("Body", "", str(regular))
            self.add_font("Body", "B", str(bold or regular))
            self.body_font = "Body"
            self.has_unicode = True
        else:
            self.body_font = "Helvetica"
            self.has_unicode = False

    def tx(self, text: str) -> str:
        if self.has_unicode:
            return text
        text = text.replace("€", "EUR ").replace("º", "o").replace("–", "-").replace("’", "'")
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font(self.body_font, "", 8)
        self.cell(0, 10, self.tx(f"{self.footer_text} - page {self.page_no()}"), align="C")

    def heading(self, text: str, size: int = 13) -> None:
        self.set_font(self.body_font, "B", size)
        self.multi_cell(0, 7, self.tx(text))
        self.ln(2)

    def para(self, text: str, size: int = 10) -> None:
        self.set_font(self.body_font, "", size)
        self.multi_cell(0, 5.5, self.tx(text))
        self.ln(2)


def make_lease() -> Path:
    pdf = Doc("Lease agreement, Rua dos Anjos 45, 3º Esq")
    pdf.set_title("Residential Lease Agreement - Rua dos Anjos 45")
    pdf.set_author("Fernando Guerreiro")
    pdf.add_page()
    pdf.heading("RESIDENTIAL LEASE AGREEMENT", 16)
    pdf.para(
        "Contrato de Arrendamento Urbano para Habitação - English translation for the tenant. "
        "In case of doubt, the Portuguese version prevails.",
        9,
    )
    pdf.heading("Parties")
    pdf.para(
        "LANDLORD: Fernando Manuel Guerreiro, retired, resident at Rua dos Anjos 45, 1º, 1150-035 Lisboa, Portugal."
    )
    pdf.para(
        "TENANT: Maya Okafor-Lindqvist, born on 14 August 1993 in Gothenburg, Sweden, "
        "of Swedish nationality, data analyst, currently resident at Rua de Cedofeita 212, "
        "4050-174 Porto, Portugal. Email: maya.okafor@example.org. Telephone: +351 912 345 678."
    )
    pdf.heading("Clause 1 - Property")
    pdf.para(
        "The landlord lets to the tenant the flat on the third floor, left side, of the building at "
        "Rua dos Anjos 45, 3º Esq, 1150-035 Lisboa (parish of Arroios), type T1: one bedroom, "
        "living room, kitchen and bathroom, total area 52 square metres, with two small balconies. "
        "The building has no lift."
    )
    pdf.heading("Clause 2 - Term")
    pdf.para(
        "The lease is for a fixed term of two years, beginning on 1 July 2025 and ending on "
        "30 June 2027, renewable automatically for successive periods of one year unless either "
        "party gives notice as provided by law."
    )
    pdf.heading("Clause 3 - Rent")
    pdf.para(
        "The monthly rent is EUR 1,150 (one thousand one hundred and fifty euros), payable by "
        "bank transfer no later than the 8th day of each month to the IBAN indicated by the landlord. "
        "The rent may be updated once a year according to the coefficient published by the "
        "national statistics institute."
    )
    pdf.heading("Clause 4 - Deposit")
    pdf.para(
        "On signature the tenant pays a security deposit of EUR 2,300, equal to two months of rent, "
        "together with the first month's rent. The deposit is returned within 30 days of the end of "
        "the lease, less the cost of any damage beyond normal wear."
    )
    pdf.heading("Clause 5 - Use of the property")
    pdf.para(
        "The flat is let for permanent residential use by the tenant only. Sub-letting, including "
        "short-term tourist letting, is not permitted."
    )
    pdf.para(
        "The tenant may play musical instruments in the flat between 10:00 and 21:00 on any day. "
        "The landlord acknowledges that the tenant plays the cello."
    )
    pdf.heading("Clause 6 - Expenses")
    pdf.para(
        "Electricity, gas, water and internet are paid by the tenant. The building's condominium "
        "fees and the property tax (IMI) are paid by the landlord."
    )
    pdf.heading("Clause 7 - Keys and inventory")
    pdf.para(
        "Two sets of keys to the flat and one key to the street door are handed over on 1 July 2025. "
        "The attached inventory lists the furniture included: a bed frame, a wardrobe, a kitchen "
        "table with four chairs, a refrigerator, an oven and a washing machine."
    )
    pdf.heading("Signatures")
    pdf.para("Signed in Lisbon on 14 June 2025, in two copies, one for each party.")
    pdf.para("The Landlord: Fernando Manuel Guerreiro            The Tenant: Maya Okafor-Lindqvist")
    path = OUT / "lease-rua-dos-anjos-45.pdf"
    pdf.output(str(path))
    return path


def make_offer() -> Path:
    pdf = Doc("Tidewater Labs, Lda. - confidential")
    pdf.set_title("Offer of employment - Data Engineer")
    pdf.set_author("Tidewater Labs")
    pdf.add_page()
    pdf.heading("TIDEWATER LABS, LDA.", 16)
    pdf.para("Hub Criativo do Beato, Rua da Manutenção 71, 1900-500 Lisboa, Portugal", 9)
    pdf.para("Lisbon, 19 May 2025")
    pdf.para("Maya Okafor-Lindqvist\nRua de Cedofeita 212\n4050-174 Porto")
    pdf.heading("Offer of employment - Data Engineer")
    pdf.para("Dear Maya,")
    pdf.para(
        "Following our conversations with you in March, April and May, we are delighted to offer "
        "you the position of Data Engineer in the Data Platform team at Tidewater Labs. This letter "
        "replaces our offer of 6 May 2025 and reflects the terms agreed on 16 May 2025."
    )
    pdf.heading("Terms", 12)
    pdf.para("Position: Data Engineer, Data Platform team.")
    pdf.para("Reporting to: Catarina Vaz, Head of Data Platform.")
    pdf.para("Start date: 8 September 2025.")
    pdf.para(
        "Place of work: our Lisbon office at the Hub Criativo do Beato, hybrid, with three days per "
        "week in the office."
    )
    pdf.para(
        "Base salary: EUR 48,000 gross per year, paid in 14 instalments (twelve monthly payments "
        "plus the holiday and Christmas allowances)."
    )
    pdf.para("Meal allowance: EUR 10.20 per working day, paid on a meal card.")
    pdf.para(
        "Relocation allowance: a one-off payment of EUR 2,000 with your first salary, to help with "
        "your move from Porto to Lisbon."
    )
    pdf.para(
        "Stock options: 2,000 options under the Tidewater Labs employee option plan, vesting over "
        "four years with a one-year cliff."
    )
    pdf.para("Holidays: 25 working days per year, pro rata in the first year.")
    pdf.para("Health insurance: company-paid private health insurance from the first day.")
    pdf.para("Probation period: 90 days.")
    pdf.para("Contract: permanent employment contract under Portuguese law.")
    pdf.heading("Next steps", 12)
    pdf.para(
        "Please sign and return this letter by 30 May 2025. Filipa Lopes, our Talent Partner, "
        "will then send you the employment contract and the onboarding form."
    )
    pdf.para("We are very much looking forward to having you build the future of our buoy data with us.")
    pdf.para("Kind regards,\n\nNuno Barata\nChief Executive Officer, Tidewater Labs, Lda.")
    pdf.heading("Acceptance", 12)
    pdf.para(
        "I accept the offer of employment on the terms set out above.\n"
        "Signed: Maya Okafor-Lindqvist        Date: 23 May 2025"
    )
    path = OUT / "tidewater-offer-letter.pdf"
    pdf.output(str(path))
    return path


def _docx(title: str, author: str) -> Document:
    doc = Document()
    doc.core_properties.title = title
    doc.core_properties.author = author
    doc.core_properties.created = FIXED_DATE.replace(tzinfo=None)
    doc.core_properties.modified = FIXED_DATE.replace(tzinfo=None)
    doc.styles["Normal"].font.size = Pt(10.5)
    return doc


def make_cv() -> Path:
    doc = _docx("Maya Okafor-Lindqvist - CV", "Maya Okafor-Lindqvist")
    doc.add_heading("Maya Okafor-Lindqvist", level=0)
    doc.add_paragraph("Data analyst - Python, SQL, forecasting, data pipelines")
    doc.add_paragraph("Address: Rua de Cedofeita 212, 4050-174 Porto, Portugal")
    doc.add_paragraph("Phone: +351 912 345 678  |  Email: maya.okafor@example.org")
    doc.add_paragraph("Date of birth: 14 August 1993  |  Place of birth: Gothenburg, Sweden")
    doc.add_paragraph("Nationality: Swedish (EU citizen, resident in Portugal since 2021)")

    doc.add_heading("Profile", level=1)
    doc.add_paragraph(
        "Data analyst with seven years of experience in logistics and freight. I build forecasts "
        "that operations teams actually use, and increasingly the pipelines underneath them. "
        "Looking for a data engineering role where I own data from ingestion to analysis."
    )

    doc.add_heading("Experience", level=1)
    doc.add_heading("Data Analyst - Atlântico Freight, Porto (March 2021 - present)", level=2)
    for item in [
        "Built the container dwell-time forecast for the Leixões terminal; cut forecast error by 21%.",
        "Rebuilt the vessel-call data feed in Python (from manual CSV exports to a scheduled pipeline).",
        "Own the weekly capacity dashboards (Power BI) used by 40+ people in operations.",
        "Mentor a junior analyst moving into analytics from the warehouse team.",
    ]:
        doc.add_paragraph(item, style="List Bullet")
    doc.add_heading(
        "Junior Data Analyst - Nordhamn Logistics AB, Gothenburg (September 2018 - February 2021)", level=2
    )
    for item in [
        "Reporting and route-cost analysis for a regional trucking and warehousing company.",
        "Automated the monthly fuel-cost report (SQL + Python), saving two days of work a month.",
    ]:
        doc.add_paragraph(item, style="List Bullet")

    doc.add_heading("Education", level=1)
    doc.add_paragraph(
        "MSc in Data Science, University of Gothenburg, 2016 - 2018. "
        "Thesis: forecasting port congestion from AIS vessel data."
    )
    doc.add_paragraph("BSc in Mathematics, Uppsala University, 2013 - 2016.")

    doc.add_heading("Skills", level=1)
    doc.add_paragraph(
        "Python (pandas, scikit-learn, statsmodels), SQL (PostgreSQL, SQL Server), "
        "Airflow, dbt, Power BI, Git, Docker, basic AWS (S3, Lambda)."
    )

    doc.add_heading("Languages", level=1)
    doc.add_paragraph("Swedish - native", style="List Bullet")
    doc.add_paragraph("English - native level (spoken at home with my father)", style="List Bullet")
    doc.add_paragraph("Portuguese - fluent (C1)", style="List Bullet")
    doc.add_paragraph("German - basic (A2)", style="List Bullet")

    doc.add_heading("Interests", level=1)
    doc.add_paragraph(
        "Cello: I play cello in the Orquestra Amadora do Porto (since 2021) and take weekly lessons. "
        "Bouldering (up to 6C). Sourdough baking."
    )
    doc.add_paragraph("CV updated April 2025. References available on request.")
    path = OUT / "maya-cv-2025.docx"
    doc.save(str(path))
    return path


def make_review() -> Path:
    doc = _docx("Annual Performance Review 2024 - Maya Okafor-Lindqvist", "Helena Marques")
    doc.add_heading("Atlântico Freight - Annual Performance Review 2024", level=0)
    table = doc.add_table(rows=0, cols=2)
    for k, v in [
        ("Employee", "Maya Okafor-Lindqvist"),
        ("Job title", "Data Analyst"),
        ("Department", "Analytics"),
        ("Employee since", "1 March 2021"),
        ("Reviewer", "Helena Marques, Head of Analytics"),
        ("Review date", "7 February 2025"),
    ]:
        row = table.add_row().cells
        row[0].text, row[1].text = k, v
    doc.add_paragraph("Review period: 1 January 2024 to 31 December 2024.")

    doc.add_heading("Overall rating", level=1)
    doc.add_paragraph("Overall rating: Exceeds expectations (4 of 5).")

    doc.add_heading("Achievements in 2024", level=1)
    for item in [
        "Designed and shipped the container dwell-time forecast for the Leixões terminal. "
        "Mean absolute error fell by 21% compared with the previous method, and the forecast "
        "is now used daily by terminal operations.",
        "Rebuilt the vessel-call feed on her own initiative; the feed has not failed since June 2024.",
        "Presented the forecasting work at the company's operations summit in Matosinhos in November.",
    ]:
        doc.add_paragraph(item, style="List Bullet")

    doc.add_heading("Areas for development", level=1)
    doc.add_paragraph(
        "Maya often holds back in meetings and follows up later with a detailed written analysis. "
        "The analysis is excellent, but decisions are sometimes made before it arrives. "
        "Goal: share concerns and proposals in the meeting itself."
    )

    doc.add_heading("Goals for 2025", level=1)
    for item in [
        "Mentor Joana Ferreira formally (fortnightly sessions, SQL and forecasting).",
        "Extend the dwell-time forecast to the Aveiro terminal by Q3.",
        "Move the vessel-call feed to IT-managed infrastructure.",
    ]:
        doc.add_paragraph(item, style="List Bullet")

    doc.add_heading("Compensation", level=1)
    doc.add_paragraph(
        "Salary adjustment: 4%, from EUR 32,000 to EUR 33,280 gross per year, effective 1 March 2025."
    )

    doc.add_heading("Employee comments", level=1)
    doc.add_paragraph(
        "Thank you, Helena, for a fair review. I agree about meetings. Over the next year I would "
        "like to take on more data engineering work: owning pipelines and infrastructure, not only "
        "the analysis on top. I would also like the daily standup to move from 8:30 to a later time "
        "(I am not joking)."
    )
    doc.add_paragraph("Signed: Helena Marques (reviewer), Maya Okafor-Lindqvist (employee), 7 February 2025.")
    path = OUT / "atlantico-review-2024.docx"
    doc.save(str(path))
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for make in (make_lease, make_offer, make_cv, make_review):
        path = make()
        print(f"{path.relative_to(OUT.parents[2])}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
