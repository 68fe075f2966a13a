"""PDF receipts with fpdf2: order, date, customer, line items and the total, in minor units."""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from eventforge.files.domain.money import format_money
from eventforge.files.service_layer.ports import OrderSnapshot, ReceiptRenderer, RenderedDocument

_FONT = "Helvetica"
# Column widths (mm) of SKU, quantity, unit price and line total on an A4 page's 190 mm.
_COLUMNS = (85.0, 25.0, 40.0, 40.0)
_ROW = 8.0


def latin1(text: str) -> str:
    """The PDF core fonts cover Latin-1 only; anything else prints as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


class FpdfReceiptRenderer(ReceiptRenderer):
    def render(self, order: OrderSnapshot) -> RenderedDocument:
        pdf = FPDF(format="A4")
        # A fixed creation date (the confirmation) makes the same order render the same bytes.
        pdf.set_creation_date(order.confirmed_at)
        pdf.set_title(latin1(f"Receipt for order {order.order_id}"))
        pdf.set_author("EventForge")
        pdf.add_page()
        self._header(pdf, order)
        self._lines(pdf, order)
        return RenderedDocument(data=bytes(pdf.output()), page_count=pdf.pages_count)

    @staticmethod
    def _header(pdf: FPDF, order: OrderSnapshot) -> None:
        pdf.set_font(_FONT, style="B", size=18)
        pdf.cell(text="EventForge receipt", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(4)
        pdf.set_font(_FONT, size=11)
        for label, value in (
            ("Order", order.order_id),
            ("Date", order.confirmed_at.strftime("%Y-%m-%d %H:%M UTC")),
            ("Customer", order.customer_id),
            ("Email", order.customer_email),
        ):
            pdf.cell(30, 7, text=f"{label}:")
            pdf.cell(text=latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(6)

    @staticmethod
    def _lines(pdf: FPDF, order: OrderSnapshot) -> None:
        sku, quantity, unit, total = _COLUMNS
        pdf.set_font(_FONT, style="B", size=11)
        for width, title, align in (
            (sku, "SKU", "L"),
            (quantity, "Quantity", "R"),
            (unit, "Unit price", "R"),
            (total, "Line total", "R"),
        ):
            pdf.cell(width, _ROW, text=title, border="B", align=align)
        pdf.ln(_ROW)
        pdf.set_font(_FONT, size=11)
        for line in order.lines:
            pdf.cell(sku, _ROW, text=latin1(line.sku))
            pdf.cell(quantity, _ROW, text=str(line.quantity), align="R")
            pdf.cell(
                unit, _ROW, text=format_money(line.unit_price_minor, order.currency), align="R"
            )
            pdf.cell(
                total, _ROW, text=format_money(line.line_total_minor, order.currency), align="R"
            )
            pdf.ln(_ROW)
        pdf.set_font(_FONT, style="B", size=12)
        pdf.cell(sku + quantity + unit, _ROW + 2, text="Total", border="T")
        pdf.cell(
            total,
            _ROW + 2,
            text=format_money(order.total_minor, order.currency),
            border="T",
            align="R",
        )
