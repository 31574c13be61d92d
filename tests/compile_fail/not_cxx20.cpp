// Built as C++17 by the test. task.hpp comes first because it includes <coroutine>, which has an
// #error of its own in C++17 mode: Ember's must still be the first thing the compiler says.
#include <ember/task.hpp>
//
#include <ember/ember.hpp>

int main() {
  return 0;
}
