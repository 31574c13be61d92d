// EMBER_REGISTER_SERVICE of a class that is not a Service (a qualified name, which the macro
// takes).
#include <ember/ember.hpp>

namespace game {
class Lobby {};
}  // namespace game

EMBER_REGISTER_SERVICE(game::Lobby);
