"""Report formats: JSON (the one serializer), nmap XML, Markdown and HTML, and the writer."""
