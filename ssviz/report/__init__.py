"""One-file reports for stakeholders: findings (plain data) -> a standalone HTML page (-> PDF).

``findings`` measures or receives the numbers; ``html`` renders them; ``pdf``
prints the page with headless Chromium when it is installed.
"""

from ssviz.report.findings import EXPOSED_BITS, Finding, ModelSummary, char_costs, measure, model_summary
from ssviz.report.html import Report, render
from ssviz.report.pdf import print_pdf

__all__ = ["EXPOSED_BITS", "Finding", "ModelSummary", "Report", "char_costs", "measure", "model_summary",
           "print_pdf", "render"]
