// crc32c.cpp — placeholder (being written).
