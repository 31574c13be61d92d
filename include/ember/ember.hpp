// SPDX-License-Identifier: Apache-2.0
// Umbrella header for examples and quick starts.
#pragma once

#include <ember/config.hpp>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/log.hpp>
#include <ember/module.hpp>
#include <ember/node.hpp>
#include <ember/service.hpp>
#include <ember/timer.hpp>
