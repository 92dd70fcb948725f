"""Pure domain core: quantities, mapping rules, planning. No I/O, no asyncio."""
