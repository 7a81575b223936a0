// Command-line flags: `--key-name VALUE`, `--key-name=VALUE`, and `--flag` / `--flag=false` for
// booleans, plus one optional positional YAML path. Boost.ProgramOptions splits the tokens; the
// values stay text so that flags, YAML and environment share one set of value parsers.
#include <boost/program_options.hpp>
#include <sstream>

#include "config/sources.h"
#include "config/suggest.h"
#include "core/error.h"

namespace po = boost::program_options;

namespace tpinfer::config {

namespace {

constexpr const char* kPositional = "config-file";

std::vector<std::string> all_flags() {
  std::vector<std::string> flags;
  for (const auto& spec : option_specs()) flags.push_back(flag_name(spec));
  flags.push_back("--help");
  flags.push_back("--version");
  return flags;
}

const OptionSpec* spec_for_flag(const std::string& name) {
  for (const auto& spec : option_specs()) {
    if (flag_name(spec) == "--" + name) return &spec;
  }
  return nullptr;
}

[[noreturn]] void fail_unknown(const std::string& token) {
  // Boost reports the token as typed ("--temprature", "-x", "--temp=1"); drop any "=value".
  std::string name = token.substr(0, token.find('='));
  std::ostringstream msg;
  msg << "unknown option '" << name << "'";
  std::string bare = name;
  while (!bare.empty() && bare[0] == '-') bare.erase(0, 1);
  if (auto near = closest_match("--" + bare, all_flags()))
    msg << " (did you mean '" << *near << "'?)";
  msg << "; see tpinfer --help";
  throw Error(msg.str());
}

bool is_bool_word(const std::string& s) {
  bool unused = false;
  return parse_bool(s, unused);
}

// Gives every boolean flag an explicit value: `--chat` -> `--chat=true`, and `--chat false` ->
// `--chat=false` when the next argument is a boolean word. Boost's implicit values would instead
// swallow any next argument, so `--chat configs/x.yaml` would read the file name as the value.
std::vector<std::string> explicit_booleans(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {  // the rest is positional
      for (; i < argc; ++i) args.emplace_back(argv[i]);
      break;
    }
    const OptionSpec* spec = nullptr;
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0 && arg.find('=') == std::string::npos) {
      spec = spec_for_flag(arg.substr(2));
    }
    if (spec == nullptr || spec->kind != OptionKind::boolean) {
      args.push_back(arg);
    } else if (i + 1 < argc && is_bool_word(argv[i + 1])) {
      args.push_back(arg + "=" + argv[++i]);
    } else {
      args.push_back(arg + "=true");
    }
  }
  return args;
}

}  // namespace

CommandLine read_command_line(int argc, const char* const* argv) {
  po::options_description desc;
  for (const auto& spec : option_specs()) {
    const std::string name = flag_name(spec).substr(2);
    desc.add_options()(name.c_str(), po::value<std::string>(), "");
  }
  desc.add_options()("help,h", "")("version", "")(kPositional,
                                                  po::value<std::vector<std::string>>(), "");
  po::positional_options_description positional;
  positional.add(kPositional, -1);

  // No prefix guessing: `--temp` must not silently mean `--temperature` (and stop doing so the
  // day a `--template` key appears).
  const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
  po::parsed_options parsed(nullptr);
  try {
    parsed = po::command_line_parser(explicit_booleans(argc, argv))
                 .options(desc)
                 .positional(positional)
                 .style(style)
                 .run();
  } catch (const po::unknown_option& e) {
    fail_unknown(e.get_option_name());
  } catch (const po::invalid_command_line_syntax& e) {
    const std::string flag = e.get_option_name();
    const OptionSpec* spec = spec_for_flag(flag.substr(flag.find_first_not_of('-')));
    if (e.kind() == po::invalid_syntax::missing_parameter && spec != nullptr) {
      TPI_FAIL("flag " << flag << ": key '" << spec->key << "': expected a value after it ("
                       << spec->expected << ")");
    }
    if (e.kind() == po::invalid_syntax::empty_adjacent_parameter && spec != nullptr) {
      TPI_FAIL("flag " << flag << ": key '" << spec->key << "': expected " << spec->expected
                       << ", found ''");
    }
    TPI_FAIL("command line: " << e.what() << "; see tpinfer --help");
  } catch (const po::error& e) {
    TPI_FAIL("command line: " << e.what() << "; see tpinfer --help");
  }

  CommandLine cl;
  for (const auto& opt : parsed.options) {
    if (opt.string_key == kPositional) {
      for (const auto& v : opt.value) {
        if (cl.config_path) {
          TPI_FAIL("unexpected argument '" << v << "': expected one config file (already have '"
                                           << *cl.config_path
                                           << "'); a value needs its flag, e.g. --prompt TEXT");
        }
        cl.config_path = v;
      }
      continue;
    }
    if (opt.string_key == "help") {
      cl.help = true;
      continue;
    }
    if (opt.string_key == "version") {
      cl.version = true;
      continue;
    }
    const OptionSpec* spec = spec_for_flag(opt.string_key);
    if (spec == nullptr) fail_unknown("--" + opt.string_key);  // cannot happen: all registered
    Setting s;
    s.spec = spec;
    s.origin = "flag " + flag_name(*spec);
    s.text = opt.value.empty() ? "" : opt.value.back();
    cl.settings.push_back(std::move(s));
  }
  return cl;
}

}  // namespace tpinfer::config
