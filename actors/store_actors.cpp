#include "actors/store_actors.hpp"

#include <caf/all.hpp>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// The store interface's own type owns its strings; the shard's write shares
// the table's buffer. One copy, on the writer's thread (the store's or the
// journal's), not on the shard's or the flusher's.
store_write to_store_write(const shard_write& w) {
  if (w.erase) return store_write{std::string{w.key()}, std::nullopt};
  return store_write{std::string{w.key()}, std::string{w.bytes()}};
}

} // namespace

std::vector<store_write> to_store_writes(const std::vector<shard_write>& items) {
  std::vector<store_write> out;
  out.reserve(items.size());
  for (const auto& i : items)
    out.push_back(to_store_write(i));
  return out;
}

store_writer_actor::behavior_type store_writer(store_writer_actor::pointer,
                                               std::shared_ptr<store> db) {
  return {
    [db](write_atom, const std::vector<shard_write>& items) -> caf::result<caf::ok_atom> {
      try {
        if (auto err = db->write_batch(to_store_writes(items))) return err;
      } catch (const std::exception& e) {
        return make_error(errc::store_failure,
                          std::string{"the store threw: "} + e.what());
      }
      return caf::ok_atom::value;
    },
  };
}

namespace {

std::vector<journal_write> numbered(const std::vector<shard_write>& items,
                                    const std::vector<uint64_t>& numbers) {
  std::vector<journal_write> out;
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    out.push_back(
      journal_write{i < numbers.size() ? numbers[i] : 0, to_store_write(items[i])});
  }
  return out;
}

} // namespace

journal_actor::behavior_type journal_writer(journal_actor::pointer,
                                            std::shared_ptr<journal> log) {
  return {
    [log](write_atom, const std::vector<shard_write>& items,
          const std::vector<uint64_t>& numbers,
          const std::vector<uint64_t>& stored) -> caf::result<caf::ok_atom> {
      if (auto err = log->append(numbered(items, numbers), stored)) return err;
      return caf::ok_atom::value;
    },
    [log](rewrite_atom, const std::vector<shard_write>& items,
          const std::vector<uint64_t>& numbers) -> caf::result<caf::ok_atom> {
      if (auto err = log->rewrite(numbered(items, numbers))) return err;
      return caf::ok_atom::value;
    },
    [log](stored_atom, const std::vector<uint64_t>& stored) -> caf::result<caf::ok_atom> {
      if (auto err = log->mark_stored(stored)) return err;
      return caf::ok_atom::value;
    },
    [log](truncate_atom) -> caf::result<caf::ok_atom> {
      if (auto err = log->reset()) return err;
      return caf::ok_atom::value;
    },
  };
}

load_function store_loader(std::shared_ptr<store> db) {
  return [db](const std::string& key) -> caf::expected<std::string> {
    auto found = db->load(key);
    if (!found) return std::move(found.error());
    if (!*found) return make_error(errc::not_found, "no value for this key in the store");
    return std::move(**found);
  };
}

} // namespace karlton
