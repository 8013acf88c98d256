// numa.cpp — placeholder (being written).
