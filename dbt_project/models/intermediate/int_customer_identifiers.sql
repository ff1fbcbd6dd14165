-- One row per customer and distinct normalised identifier (kind 'phone' = E.164 with '+',
-- kind 'email' = trimmed, lower-cased address) over all of the customer's identity-graph
-- nodes: the input of audience exports (audiences/identifiers.py). Values are normalised once,
-- in the warehouse (raw.contact_points, warehouse/contact_points.py); each platform's own
-- transform and hash is applied at export time (audiences/platforms.py), never here.
with

points as (

    select node_id, point_kind, value_normalized
    from {{ ref('int_contact_points__unioned') }}
    where value_normalized is not null
        and value_normalized <> ''

),

resolved as (

    select node_id, customer_id
    from {{ ref('int_customers__resolved') }}

),

final as (

    select distinct
        resolved.customer_id,
        points.point_kind as kind,
        points.value_normalized
    from points
    inner join resolved
        on points.node_id = resolved.node_id

)

select * from final
