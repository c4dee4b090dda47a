"""What a clinician is shown (layer 4, pure): the facts of one served attendance Observation with the store's
monthly tallies (facts), the CDS Hooks card's texts (card), the chart as server-rendered SVG (chart_svg) and the
chart page with its table (chart_page). No I/O here."""
