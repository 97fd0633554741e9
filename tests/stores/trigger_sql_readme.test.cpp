// The README shows the change triggers' SQL for DBAs who install it by hand;
// this keeps that copy the SQL postgres_store really runs.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include "support/must.hpp"
#include <karlton/stores/postgres_store.hpp>

using karlton::testing::must;

namespace {

// The ```sql block after `marker` in `text`, without its fences.
std::string sql_block_after(const std::string& text, const std::string& marker) {
  auto at = text.find(marker);
  if (at == std::string::npos) return "(no marker '" + marker + "')";
  auto open = text.find("```sql\n", at);
  if (open == std::string::npos) return "(no sql block)";
  open += 7;
  auto close = text.find("\n```", open);
  return text.substr(open, close - open);
}

std::string trimmed(std::string s) {
  s.erase(0, s.find_first_not_of('\n'));
  s.erase(s.find_last_not_of('\n') + 1);
  return s;
}

} // namespace

TEST_CASE("the README shows the trigger SQL that trigger_sql makes", "[pg-trigger-sql]") {
  std::ifstream in{KARLTON_README};
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  auto shown =
    sql_block_after(text.str(), "<!-- trigger_sql: default options, table users -->");
  auto made = must(karlton::postgres_store::trigger_sql(karlton::postgres_options{}, "users"));
  CHECK(trimmed(shown) == trimmed(made));
}
