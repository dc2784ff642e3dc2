// A multi-turn chat on the command line: each line read from stdin is a user message; the
// model's reply is streamed to stdout, followed by a newline. Statistics go to stderr.
//
//   usage: chat MODEL.gguf [MAX_TOKENS=256] [TEMPERATURE=0.8] [SYSTEM_PROMPT]
//
//   g++ -O2 -std=c++17 examples/cpp/chat.cpp -Iinclude -Ltarget/release -lllmrt
//       -Wl,-rpath,$PWD/target/release -o chat        (one line)
//
// The `llmrt` namespace below is a small RAII wrapper over the C API: handles are freed by
// destructors, failures become exceptions carrying llm_last_error().
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "llmrt.h"

namespace llmrt {

// A failed call: its status and the library's message.
class Error : public std::runtime_error {
public:
    Error(llm_status status, const std::string &message)
        : std::runtime_error(std::string(llm_status_str(status)) + ": " + message),
          status_(status) {}
    llm_status status() const { return status_; }

private:
    llm_status status_;
};

inline void check(llm_status status) {
    if (status != LLM_OK) throw Error(status, llm_last_error());
}

// Shared by any number of sessions and threads.
class Model {
public:
    explicit Model(const std::string &path, const llm_model_params &params = llm_model_default_params())
        : handle_(llm_load(path.c_str(), &params)) {
        if (!handle_) throw Error(llm_last_status(), llm_last_error());
    }
    const llm_model *get() const { return handle_.get(); }

private:
    struct Free {
        void operator()(llm_model *m) const { llm_model_free(m); }
    };
    std::unique_ptr<llm_model, Free> handle_;
};

struct Message {
    std::string role;
    std::string content;
};

// One conversation's context; use from one thread at a time. Movable, not copyable.
class Session {
public:
    using OnPiece = std::function<bool(std::string_view)>;

    explicit Session(const Model &model,
                     const llm_session_params &params = llm_session_default_params())
        : handle_(llm_session_new(model.get(), &params)) {
        if (!handle_) throw Error(llm_last_status(), llm_last_error());
    }

    // The assistant's reply to `messages`, streamed to `on_piece` (return false to stop).
    std::string chat(const std::vector<Message> &messages, const llm_generate_params &params,
                     const OnPiece &on_piece, llm_generate_stats *stats = nullptr) {
        std::vector<llm_chat_message> c_messages;
        c_messages.reserve(messages.size());
        for (const Message &m : messages) c_messages.push_back({m.role.c_str(), m.content.c_str()});
        Stream stream{on_piece, {}, {}};
        check(llm_chat(handle_.get(), c_messages.data(), c_messages.size(), &params, &Stream::call,
                       &stream, nullptr, 0, stats));
        // An exception from on_piece could not cross the C API; it stopped generation instead.
        if (stream.error) std::rethrow_exception(stream.error);
        return stream.text;
    }

    void reset() { check(llm_session_reset(handle_.get())); }

private:
    struct Stream {
        const OnPiece &on_piece;
        std::string text;
        std::exception_ptr error;

        static bool call(const char *piece, size_t len, void *user_data) {
            auto *self = static_cast<Stream *>(user_data);
            self->text.append(piece, len);
            try {
                return self->on_piece(std::string_view(piece, len));
            } catch (...) {
                self->error = std::current_exception();
                return false;
            }
        }
    };
    struct Free {
        void operator()(llm_session *s) const { llm_session_free(s); }
    };
    std::unique_ptr<llm_session, Free> handle_;
};

}  // namespace llmrt

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [MAX_TOKENS=256] [TEMPERATURE=0.8] [SYSTEM]\n",
                     argv[0]);
        return 2;
    }
    try {
        llmrt::Model model(argv[1]);
        llmrt::Session session(model);
        llm_generate_params params = llm_generate_default_params();
        params.max_tokens = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 256;
        params.temperature = argc > 3 ? std::strtof(argv[3], nullptr) : 0.8f;

        std::vector<llmrt::Message> history;
        if (argc > 4) history.push_back({"system", argv[4]});
        std::string line;
        while (std::getline(std::cin, line)) {
            if (line.empty()) continue;
            history.push_back({"user", line});
            llm_generate_stats stats{};
            std::string reply = session.chat(
                history, params,
                [](std::string_view piece) {
                    std::cout << piece << std::flush;
                    return true;
                },
                &stats);
            std::cout << '\n' << std::flush;
            std::fprintf(stderr, "[prompt %zu tokens (%zu reused), reply %zu tokens, %.1f tokens/s]\n",
                         stats.prompt_tokens, stats.reused_tokens, stats.generated_tokens,
                         stats.generate_tokens_per_second);
            history.push_back({"assistant", reply});
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
