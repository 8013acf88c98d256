// pager.cpp — placeholder (being written).
