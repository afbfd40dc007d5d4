// The documentation in docs/ and the README link only to files (and headings) that the repository
// has.
#include <doctest/doctest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string Read(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'.
std::string Anchor(const std::string& heading) {
    std::string out;
    for (unsigned char c : heading) {
        if (std::isalnum(c) != 0 || c == '-' || c == '_') {
            out += static_cast<char>(std::tolower(c));
        } else if (c == ' ') {
            out += '-';
        }
    }
    return out;
}

std::set<std::string> Anchors(const std::string& markdown) {
    std::set<std::string> anchors;
    std::istringstream lines(markdown);
    std::string line;
    bool fenced = false;
    while (std::getline(lines, line)) {
        if (line.rfind("```", 0) == 0) fenced = !fenced;
        if (fenced || line.empty() || line[0] != '#') continue;
        size_t text = line.find_first_not_of('#');
        if (text == std::string::npos) continue;
        text = line.find_first_not_of(' ', text);
        if (text != std::string::npos) anchors.insert(Anchor(line.substr(text)));
    }
    return anchors;
}

// The targets of the [text](target) links of a markdown text, outside code blocks.
std::vector<std::string> Links(const std::string& markdown) {
    std::vector<std::string> out;
    std::istringstream lines(markdown);
    std::string line;
    bool fenced = false;
    std::string text;
    while (std::getline(lines, line)) {
        if (line.rfind("```", 0) == 0) fenced = !fenced;
        if (!fenced) text += line + "\n";
    }
    for (size_t at = text.find("]("); at != std::string::npos; at = text.find("](", at + 1)) {
        size_t end = text.find(')', at);
        if (end != std::string::npos) out.push_back(text.substr(at + 2, end - at - 2));
    }
    return out;
}

std::vector<fs::path> DocFiles() {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(AUDSYNC_SOURCE_DIR) / "docs")) {
        if (e.path().extension() == ".md") files.push_back(e.path());
    }
    files.push_back(fs::path(AUDSYNC_SOURCE_DIR) / "README.md");  // what a clone shows first
    return files;
}

}  // namespace

TEST_SUITE("docs") {
    TEST_CASE("every relative link in docs resolves to a file and heading of the repository") {
        auto files = DocFiles();
        REQUIRE(files.size() >= 5);
        fs::path root = fs::weakly_canonical(AUDSYNC_SOURCE_DIR);
        for (const auto& file : files) {
            for (const auto& link : Links(Read(file))) {
                if (link.rfind("http://", 0) == 0 || link.rfind("https://", 0) == 0 ||
                    link.rfind("mailto:", 0) == 0) {
                    continue;
                }
                CAPTURE(file.filename().string());
                CAPTURE(link);
                std::string path = link.substr(0, link.find('#'));
                fs::path target = path.empty() ? file : file.parent_path() / path;
                CHECK(fs::exists(target));
                // Inside the repository: a clone has nothing beside it.
                std::string canonical = fs::weakly_canonical(target).string();
                CHECK(canonical.rfind(root.string(), 0) == 0);
                if (link.find('#') != std::string::npos && fs::exists(target)) {
                    CHECK(Anchors(Read(target)).count(link.substr(link.find('#') + 1)) == 1);
                }
            }
        }
    }

    TEST_CASE("docs name no file outside the repository") {
        for (const auto& file : DocFiles()) {
            CAPTURE(file.filename().string());
            CHECK(Read(file).find("../shared/") == std::string::npos);
        }
    }

    TEST_CASE("the anchor rule matches GitHub's for the headings linked here") {
        CHECK(Anchor("4. Segment's own LaunchDarkly Audiences destination") ==
              "4-segments-own-launchdarkly-audiences-destination");
        CHECK(Anchor("`POST /_emulator/faults`") == "post-_emulatorfaults");
        CHECK(Links("see [a](b.md) and [c](d.md#e)\n```\n[x](y)\n```\n") ==
              std::vector<std::string>{"b.md", "d.md#e"});
    }
}
