// nvme_store.cpp — placeholder (being written).
