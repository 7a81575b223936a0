// Post-processors of tokenizer.json (single sequence only): TemplateProcessing, ByteLevel (no
// change to ids), RobertaProcessing, BertProcessing, Sequence.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pipeline.h"

namespace tpinfer::tok {

namespace {

class FixedProcessor : public PostProcessor {
 public:
  FixedProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void apply(std::vector<int32_t>& ids) const override {
    if (!before_.empty()) ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }

 private:
  std::vector<int32_t> before_, after_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void apply(std::vector<int32_t>& ids) const override {
    for (const auto& p : parts_) p->apply(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j,
                                                   const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "ByteLevel") return nullptr;
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& p : j.at("processors")) {
      if (auto pp = make_post_processor(p, where)) parts.push_back(std::move(pp));
    }
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  if (type == "TemplateProcessing") {
    std::vector<int32_t> before, after;
    bool seen_a = false;
    const auto& specials = j.at("special_tokens");
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        TPI_CHECK(item.at("Sequence").value("id", "A") == "A" && !seen_a,
                  where << ": TemplateProcessing 'single' must hold sequence A once");
        seen_a = true;
        continue;
      }
      TPI_CHECK(item.contains("SpecialToken"),
                where << ": TemplateProcessing item must be Sequence or SpecialToken");
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      TPI_CHECK(specials.contains(name), where << ": TemplateProcessing uses special token '"
                                               << name << "' that special_tokens does not define");
      for (const auto& id : specials.at(name).at("ids")) {
        (seen_a ? after : before).push_back(id.get<int32_t>());
      }
    }
    TPI_CHECK(seen_a, where << ": TemplateProcessing 'single' has no sequence A");
    return std::make_unique<FixedProcessor>(std::move(before), std::move(after));
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const int32_t cls = j.at("cls").at(1).get<int32_t>();
    const int32_t sep = j.at("sep").at(1).get<int32_t>();
    return std::make_unique<FixedProcessor>(std::vector<int32_t>{cls}, std::vector<int32_t>{sep});
  }
  TPI_FAIL(where << ": post_processor type '" << type
                 << "' is not supported (supported: TemplateProcessing, ByteLevel, "
                    "RobertaProcessing, BertProcessing, Sequence)");
}

}  // namespace tpinfer::tok
