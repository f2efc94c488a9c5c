"""What a lab is: the strict topology model, NAT behaviours in RFC 4787 terms with their presets, link
impairments, and generated topologies. Pure: no kernel, no root."""
