// SPDX-License-Identifier: Apache-2.0
// Umbrella header for examples and quick starts.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <ember/config.hpp>
#include <ember/context.hpp>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/event.hpp>
#include <ember/log.hpp>
#include <ember/module.hpp>
#include <ember/node.hpp>
#include <ember/pid.hpp>
#include <ember/rpc.hpp>
#include <ember/service.hpp>
#include <ember/task.hpp>
#include <ember/timer.hpp>
